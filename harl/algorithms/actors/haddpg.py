"""HADDPG: heterogeneous-agent deep deterministic policy gradient, one instance per agent."""

from __future__ import annotations

import gymnasium
import numpy as np
import torch
import torch.nn as nn

from harl.algorithms.actors.off_policy_base import OffPolicyBase
from harl.models.policy_models.deterministic_policy import DeterministicPolicy

Tensor = torch.Tensor


class HADDPG(OffPolicyBase):
    """Deterministic actor ``mu(o)`` with a Polyak target copy; Box actions only.

    Exploration adds ``N(0, (expl_noise * scale)^2)`` and clips to the bounds, ``scale`` being
    half the Box width. Extra args key: ``expl_noise``.
    """

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.spaces.Box,
        act_space: gymnasium.spaces.Box,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        super().__init__(args, obs_space, act_space, device)
        self.expl_noise: float = args["expl_noise"]
        self.target_actor = self.make_target(self.actor)
        self.low = torch.as_tensor(act_space.low, dtype=torch.float32, device=self.device)
        self.high = torch.as_tensor(act_space.high, dtype=torch.float32, device=self.device)
        self.scale = (self.high - self.low) / 2

    def _build_actor(self, args: dict, obs_space: gymnasium.spaces.Box, act_space: gymnasium.Space) -> nn.Module:
        if not isinstance(act_space, gymnasium.spaces.Box):
            raise NotImplementedError(f"{type(self).__name__} supports Box action spaces only, not {act_space}")
        return DeterministicPolicy(args, obs_space, act_space, self.device)

    def _noisy(self, actions: Tensor, std: float, clip: float | None = None) -> Tensor:
        """``clip_bounds(actions + eps)``, ``eps ~ N(0, (std * scale)^2)`` clipped to ``+-clip * scale``."""
        noise = torch.randn_like(actions) * std * self.scale
        if clip is not None:
            noise = torch.maximum(torch.minimum(noise, clip * self.scale), -clip * self.scale)
        return torch.maximum(torch.minimum(actions + noise, self.high), self.low)

    @torch.no_grad()
    def get_actions(
        self, obs: Tensor | np.ndarray, available_actions: Tensor | np.ndarray | None = None, explore: bool = True
    ) -> Tensor:
        actions = self.actor(self.as_tensor(obs))
        return self._noisy(actions, self.expl_noise) if explore else actions

    def sample(self, obs: Tensor, available_actions: Tensor | None = None) -> tuple[Tensor, None]:
        return self.actor(self.as_tensor(obs)), None

    @torch.no_grad()
    def get_target_actions(self, obs: Tensor, available_actions: Tensor | None = None) -> tuple[Tensor, None]:
        return self.target_actor(self.as_tensor(obs)), None
