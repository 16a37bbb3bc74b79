"""HATD3: heterogeneous-agent twin delayed DDPG, one instance per agent."""

from __future__ import annotations

import gymnasium
import torch

from harl.algorithms.actors.haddpg import HADDPG

Tensor = torch.Tensor


class HATD3(HADDPG):
    """HADDPG plus TD3's target policy smoothing and delayed actor updates (Fujimoto et al. 2018).

    The twin-min of the TD target lives in ``TwinContinuousQCritic``. Extra args keys:
    ``policy_noise``, ``noise_clip`` (both in units of half the Box width), ``policy_freq``.
    """

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.spaces.Box,
        act_space: gymnasium.spaces.Box,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        super().__init__(args, obs_space, act_space, device)
        self.policy_noise: float = args["policy_noise"]
        self.noise_clip: float = args["noise_clip"]
        self.policy_freq = int(args["policy_freq"])

    @torch.no_grad()
    def get_target_actions(self, obs: Tensor, available_actions: Tensor | None = None) -> tuple[Tensor, None]:
        # target policy smoothing: a' = clip(mu'(o') + clip(eps, -c, c), low, high)
        actions = self.target_actor(self.as_tensor(obs))
        return self._noisy(actions, self.policy_noise, self.noise_clip), None
