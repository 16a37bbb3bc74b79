"""HAPPO: heterogeneous-agent PPO (Kuba et al., 2022)."""

from __future__ import annotations

import gymnasium
import torch

from harl.algorithms.actors.on_policy_base import OnPolicyBase
from harl.common.buffers.on_policy_actor_buffer import ActorBatch


class HAPPO(OnPolicyBase):
    """Sequential PPO update of one agent, weighted by the factor ``M`` of the agents before it.

    Reads ``clip_param``, ``ppo_epoch``, ``actor_num_mini_batch`` besides the base keys.
    """

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.Space,
        act_space: gymnasium.Space,
        device: torch.device | str = torch.device("cpu"),
    ) -> None:
        super().__init__(args, obs_space, act_space, device)
        self.clip_param = args["clip_param"]
        self.num_epochs = args["ppo_epoch"]
        self.num_mini_batch = args["actor_num_mini_batch"]

    def update(self, batch: ActorBatch) -> dict[str, float | torch.Tensor]:
        """One clipped-surrogate gradient step on ``batch``."""
        advantages = self._tensor(batch.advantages)
        factor = self._factor(batch)
        ratio, dist_entropy, _ = self._ratio_and_entropy(batch)

        # HAPPO clipped surrogate with the product-of-ratios factor M:
        # L = E[ M * min(r A, clip(r, 1 - eps, 1 + eps) A) ]   (M > 0, so M may sit outside the min)
        surr1 = ratio * advantages
        surr2 = torch.clamp(ratio, 1.0 - self.clip_param, 1.0 + self.clip_param) * advantages
        policy_loss = -self._policy_mean(factor * torch.min(surr1, surr2), batch)

        return self._entropy_regularised_step(policy_loss, dist_entropy, ratio)
