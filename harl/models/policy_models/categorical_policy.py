"""Categorical policy with availability masks for Discrete actions: HASAC on discrete tasks."""

from __future__ import annotations

import gymnasium
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical

from harl.models.base.mlp import MLPBase
from harl.utils.models_tools import init_linear

# Finite rather than -inf: a masked action's log-prob is multiplied by a 0 one-hot entry, and
# 0 * -inf would be NaN; exp(-1e10) is exactly 0 in float32, so masked actions are never drawn.
MASKED_LOGIT = -1e10


class CategoricalPolicy(nn.Module):
    """HARL's ``StochasticMlpPolicy`` for one ``Discrete(n)`` agent: ``MLPBase`` then logits.

    Args:
        args: model keys ``hidden_sizes``, ``activation_func``, ``use_feature_normalization``,
            ``initialization_method``, ``gain`` (of the logits layer).
        obs_space: Box of shape ``(d,)``.
        action_space: ``Discrete(n)``.
        device: where the parameters live.
    """

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.spaces.Box,
        action_space: gymnasium.spaces.Discrete,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        super().__init__()
        self.base = MLPBase(args, obs_space.shape)
        self.logits_layer = init_linear(
            args["hidden_sizes"][-1], int(action_space.n), args["initialization_method"], args["gain"]
        )
        self.to(device)

    def log_probs(self, obs: torch.Tensor, available_actions: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised log-probabilities ``(B, n)``; unavailable actions get ``~ -1e10``."""
        logits = self.logits_layer(self.base(obs))
        if available_actions is not None:
            logits = logits.masked_fill(available_actions == 0, MASKED_LOGIT)
        return F.log_softmax(logits, dim=-1)

    def forward(
        self, obs: torch.Tensor, available_actions: torch.Tensor | None = None, stochastic: bool = True
    ) -> torch.Tensor:
        """Action indices ``(B, 1)`` (int64): sampled, or the most likely available action."""
        log_probs = self.log_probs(obs, available_actions)
        actions = Categorical(logits=log_probs).sample() if stochastic else log_probs.argmax(-1)
        return actions.unsqueeze(-1)

    def sample_onehot(
        self, obs: torch.Tensor, available_actions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable sample for the critic: straight-through Gumbel-softmax one-hot.

        Returns:
            one-hot actions ``(B, n)`` (hard values, soft gradients) and ``log pi(a|o)`` ``(B, 1)``.
        """
        log_probs = self.log_probs(obs, available_actions)
        onehot = F.gumbel_softmax(log_probs, tau=1.0, hard=True)
        return onehot, (onehot * log_probs).sum(-1, keepdim=True)
