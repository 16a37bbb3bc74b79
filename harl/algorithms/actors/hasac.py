"""HASAC: heterogeneous-agent soft actor-critic (Liu et al. 2024), one instance per agent."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
import torch.nn as nn

from harl.algorithms.actors.off_policy_base import OffPolicyBase, Temperature, default_target_entropy
from harl.models.policy_models.categorical_policy import CategoricalPolicy
from harl.models.policy_models.squashed_gaussian_policy import SquashedGaussianPolicy

Tensor = torch.Tensor


class HASAC(OffPolicyBase):
    """Stochastic actor: squashed Gaussian for Box, categorical (with masks) for Discrete.

    Maximises ``Q(s, a) - alpha log pi(a_m|o_m)`` with this agent's own temperature
    (``auto_alpha``: learned toward :func:`default_target_entropy`). No target actor: the soft
    TD target samples the current policy (:meth:`get_target_actions`).

    Extra args keys: ``auto_alpha``, ``alpha``, ``alpha_lr``.
    """

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.spaces.Box,
        act_space: gymnasium.Space,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        super().__init__(args, obs_space, act_space, device)
        self.discrete = isinstance(act_space, gymnasium.spaces.Discrete)
        self.target_entropy = default_target_entropy(act_space)
        self.temperature = Temperature(args, self.target_entropy, self.device)

    def _build_actor(self, args: dict, obs_space: gymnasium.spaces.Box, act_space: gymnasium.Space) -> nn.Module:
        if isinstance(act_space, gymnasium.spaces.Box):
            return SquashedGaussianPolicy(args, obs_space, act_space, self.device)
        if isinstance(act_space, gymnasium.spaces.Discrete):
            return CategoricalPolicy(args, obs_space, act_space, self.device)
        raise NotImplementedError(f"HASAC supports Box and Discrete action spaces, not {act_space}")

    @torch.no_grad()
    def get_actions(
        self, obs: Tensor | np.ndarray, available_actions: Tensor | np.ndarray | None = None, explore: bool = True
    ) -> Tensor:
        obs = self.as_tensor(obs)
        if self.discrete:
            return self.actor(obs, self.as_tensor(available_actions), stochastic=explore)
        return self.actor(obs, stochastic=explore, with_logprob=False)[0]

    def sample(self, obs: Tensor, available_actions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        obs = self.as_tensor(obs)
        if self.discrete:
            return self.actor.sample_onehot(obs, self.as_tensor(available_actions))
        return self.actor(obs, stochastic=True, with_logprob=True)

    @torch.no_grad()
    def get_target_actions(self, obs: Tensor, available_actions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.sample(obs, available_actions)

    def _objective(self, q: Tensor, logp: Tensor | None) -> Tensor:
        # soft policy improvement: maximise Q(s, a) - alpha log pi(a_m|o_m)
        return q - self.temperature.alpha * logp

    def _after_actor_step(self, logp: Tensor | None) -> dict[str, float]:
        return self.temperature.update(logp)

    def _state_objects(self) -> dict[str, Any]:
        return {**super()._state_objects(), "temperature": self.temperature}
