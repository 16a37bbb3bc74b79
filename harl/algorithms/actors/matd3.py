"""MATD3: the HATD3 actor, updated simultaneously by the MA runner."""

from harl.algorithms.actors.hatd3 import HATD3


class MATD3(HATD3):
    """Same actor as :class:`HATD3`; only the runner differs (all agents update at once,
    against the other agents' pre-update actions)."""
