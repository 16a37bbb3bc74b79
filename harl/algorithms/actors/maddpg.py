"""MADDPG (Lowe et al. 2017): the HADDPG actor, updated simultaneously by the MA runner."""

from harl.algorithms.actors.haddpg import HADDPG


class MADDPG(HADDPG):
    """Same actor as :class:`HADDPG`; only the runner differs (all agents update at once,
    against the other agents' pre-update actions)."""
