"""Action head (HARL's ``ACTLayer``): features -> action distribution -> actions / log-probs."""

from __future__ import annotations

import gymnasium
import torch
from torch import nn

from harl.models.base.distributions import Categorical, DiagGaussian, FixedCategorical, FixedNormal
from harl.utils.models_tools import masked_mean

ActionDistribution = FixedCategorical | FixedNormal


class ACTLayer(nn.Module):
    """Distribution head for a ``Discrete`` or ``Box`` action space.

    Args:
        action_space: the agent's action space.
        inputs_dim: feature size ``H``.
        initialization_method: ``torch.nn.init`` method name for the output layer.
        gain: output-layer init gain (HARL's ``gain``, 0.01 by default: near-uniform initial policy).
        args: model config; ``std_x_coef``/``std_y_coef`` are read for Box spaces.
    """

    def __init__(
        self, action_space: gymnasium.Space, inputs_dim: int, initialization_method: str, gain: float, args: dict
    ) -> None:
        super().__init__()
        if isinstance(action_space, gymnasium.spaces.Discrete):
            self.action_out = Categorical(inputs_dim, int(action_space.n), initialization_method, gain)
        elif isinstance(action_space, gymnasium.spaces.Box):
            self.action_out = DiagGaussian(inputs_dim, action_space.shape[0], initialization_method, gain, args)
        else:
            raise NotImplementedError(
                f"action space {type(action_space).__name__} is not supported (Discrete and Box are)"
            )

    def forward(
        self, x: torch.Tensor, available_actions: torch.Tensor | None = None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (or take the mode of) the action distribution.

        Returns:
            actions ``(B, a)`` (int64 indices for Discrete) and their log-probs ``(B, 1)`` for
            Discrete, ``(B, a)`` per dimension for Box.
        """
        dist = self.action_out(x, available_actions)
        actions = dist.mode() if deterministic else dist.sample()
        return actions, dist.log_probs(actions)

    def evaluate_actions(
        self,
        x: torch.Tensor,
        action: torch.Tensor,
        available_actions: torch.Tensor | None = None,
        active_masks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, ActionDistribution]:
        """Log-probs of ``action``, mean entropy over active samples, and the distribution."""
        dist = self.action_out(x, available_actions)
        return dist.log_probs(action), masked_mean(dist.entropy(), active_masks), dist
