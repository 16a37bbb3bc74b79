"""HAA2C: heterogeneous-agent advantage actor-critic (Zhong et al., 2024)."""

from __future__ import annotations

import gymnasium
import torch

from harl.algorithms.actors.on_policy_base import OnPolicyBase
from harl.common.buffers.on_policy_actor_buffer import ActorBatch


class HAA2C(OnPolicyBase):
    """Sequential unclipped policy-gradient update weighted by the factor ``M``.

    Reads ``a2c_epoch`` and ``actor_num_mini_batch`` besides the base keys.
    """

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.Space,
        act_space: gymnasium.Space,
        device: torch.device | str = torch.device("cpu"),
    ) -> None:
        super().__init__(args, obs_space, act_space, device)
        self.num_epochs = args["a2c_epoch"]
        self.num_mini_batch = args["actor_num_mini_batch"]

    def update(self, batch: ActorBatch) -> dict[str, float | torch.Tensor]:
        """One gradient step on ``batch``."""
        advantages = self._tensor(batch.advantages)
        factor = self._factor(batch)
        ratio, dist_entropy, _ = self._ratio_and_entropy(batch)

        # HAA2C surrogate L = E[ M * r * A ]; at r = 1 its gradient is the policy gradient
        # E[ M * A * grad log pi ], and later epochs stay importance-weighted.
        policy_loss = -self._policy_mean(factor * ratio * advantages, batch)

        return self._entropy_regularised_step(policy_loss, dist_entropy, ratio)
