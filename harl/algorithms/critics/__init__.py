"""Critics."""
from harl.algorithms.critics.v_critic import VCritic

__all__ = ["VCritic"]
