"""Soft twin centralised Q critic (HASAC): clipped double Q with the entropy term in the target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import torch

from harl.algorithms.actors.off_policy_base import Temperature, default_target_entropy
from harl.algorithms.critics.twin_continuous_q_critic import TwinContinuousQCritic

Tensor = torch.Tensor


class SoftTwinContinuousQCritic(TwinContinuousQCritic):
    """``y = R + gamma^k (1 - d) (min_j Q'_j(s', a') - alpha sum_i log pi_i(a'_i|o'_i))``.

    ``alpha`` is the critic's own joint temperature (HARL): fixed ``alpha``, or with
    ``auto_alpha`` learned toward the sum of the agents' target entropies through
    :meth:`update_alpha`. Actors maximise ``min_j Q_j``. Extra args keys: ``auto_alpha``,
    ``alpha``, ``alpha_lr``.
    """

    def __init__(
        self,
        args: dict,
        share_obs_space: gymnasium.spaces.Box,
        act_spaces: Sequence[gymnasium.Space],
        num_agents: int,
        state_type: str,
        device: torch.device = torch.device("cpu"),
        obs_spaces: Sequence[gymnasium.spaces.Box] | None = None,
    ) -> None:
        super().__init__(args, share_obs_space, act_spaces, num_agents, state_type, device, obs_spaces)
        joint_target_entropy = sum(default_target_entropy(space) for space in act_spaces)
        self.temperature = Temperature(args, joint_target_entropy, self.device)

    def _policy_value(self, q_heads: Tensor) -> Tensor:
        return q_heads.min(-1, keepdim=True).values

    def _next_state_value(self, next_q: Tensor, next_logps: Sequence[Tensor] | None) -> Tensor:
        # soft state value: V(s') = Q'(s', a') - alpha log pi(a'|s'), log pi of the joint policy
        # being the sum of the agents' log-probs
        if next_logps is None:
            raise ValueError("the soft critic needs next_logps (log pi of the next actions)")
        joint_logp = torch.stack(list(next_logps)).sum(0)
        if self.state_type == "FP":
            joint_logp = joint_logp.unsqueeze(-2)
        return next_q - self.temperature.alpha * joint_logp

    def update_alpha(self, joint_logp: Tensor) -> dict[str, float]:
        """Temperature step from ``sum_i log pi_i(a_i|o_i)`` ``(B, 1)`` of fresh samples (no-op if fixed)."""
        return self.temperature.update(joint_logp)

    def _state_objects(self) -> dict[str, Any]:
        return {**super()._state_objects(), "temperature": self.temperature}
