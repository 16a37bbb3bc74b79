"""MLP feature extractor (HARL's ``MLPLayer`` / ``MLPBase``)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from harl.utils.models_tools import get_activation_gain, get_active_func, init_linear


class MLPLayer(nn.Module):
    """Stack of ``Linear -> activation -> LayerNorm`` blocks, one per entry of ``hidden_sizes``."""

    def __init__(
        self, input_dim: int, hidden_sizes: Sequence[int], initialization_method: str, activation_func: str
    ) -> None:
        super().__init__()
        gain = get_activation_gain(activation_func)
        layers: list[nn.Module] = []
        for in_dim, out_dim in zip([input_dim, *hidden_sizes[:-1]], hidden_sizes):
            layers += [
                init_linear(in_dim, out_dim, initialization_method, gain),
                get_active_func(activation_func),
                nn.LayerNorm(out_dim),
            ]
        self.fc = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, input_dim)`` to ``(B, hidden_sizes[-1])``."""
        return self.fc(x)


class MLPBase(nn.Module):
    """Optional LayerNorm on the raw input (``use_feature_normalization``) followed by ``MLPLayer``.

    Args:
        args: model config with ``hidden_sizes``, ``activation_func``, ``initialization_method``,
            ``use_feature_normalization``.
        obs_shape: ``(d,)`` shape of one flat input.
    """

    def __init__(self, args: dict, obs_shape: Sequence[int]) -> None:
        super().__init__()
        if len(obs_shape) != 1:
            raise ValueError(f"MLPBase needs a flat observation, got shape {tuple(obs_shape)}")
        obs_dim = obs_shape[0]
        self.use_feature_normalization = args["use_feature_normalization"]
        if self.use_feature_normalization:
            self.feature_norm = nn.LayerNorm(obs_dim)
        self.mlp = MLPLayer(obs_dim, args["hidden_sizes"], args["initialization_method"], args["activation_func"])

    def layers(self) -> list[nn.Module]:
        """The layers in order (for :class:`harl.models.base.stacked.StackedLayers`)."""
        return ([self.feature_norm] if self.use_feature_normalization else []) + list(self.mlp.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, d)`` observations to ``(B, hidden_sizes[-1])`` features."""
        if self.use_feature_normalization:
            x = self.feature_norm(x)
        return self.mlp(x)
