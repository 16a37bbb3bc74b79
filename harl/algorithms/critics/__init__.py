"""Critics; ``CRITIC_REGISTRY`` maps an off-policy algorithm to its centralised Q critic."""

from harl.algorithms.critics.continuous_q_critic import ContinuousQCritic
from harl.algorithms.critics.soft_twin_continuous_q_critic import SoftTwinContinuousQCritic
from harl.algorithms.critics.twin_continuous_q_critic import TwinContinuousQCritic
from harl.algorithms.critics.v_critic import VCritic

CRITIC_REGISTRY = {
    "hasac": SoftTwinContinuousQCritic,
    "haddpg": ContinuousQCritic,
    "maddpg": ContinuousQCritic,
    "hatd3": TwinContinuousQCritic,
    "matd3": TwinContinuousQCritic,
    "haqo": TwinContinuousQCritic,
}

__all__ = ["CRITIC_REGISTRY", "ContinuousQCritic", "SoftTwinContinuousQCritic", "TwinContinuousQCritic", "VCritic"]
