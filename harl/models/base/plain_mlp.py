"""Plain multilayer perceptron (HARL's ``PlainMLP``) for the off-policy actors and critics.

HARL builds its deterministic and squashed Gaussian policies and its continuous Q networks from
a bare ``Linear -> activation`` stack with PyTorch's default initialisation (no LayerNorm, no
orthogonal initialisation, unlike ``MLPBase``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from harl.utils.models_tools import get_active_func


class PlainMLP(nn.Sequential):
    """``Linear -> activation`` for each consecutive pair of ``sizes``.

    Args:
        sizes: layer widths, input first, e.g. ``[obs_dim, 256, 256, act_dim]``.
        activation_func: activation after every layer but the last.
        final_activation_func: activation after the last layer.
    """

    def __init__(self, sizes: Sequence[int], activation_func: str, final_activation_func: str = "identity") -> None:
        layers: list[nn.Module] = []
        n_layers = len(sizes) - 1
        for j in range(n_layers):
            act = activation_func if j < n_layers - 1 else final_activation_func
            layers += [nn.Linear(sizes[j], sizes[j + 1]), get_active_func(act)]
        super().__init__(*layers)
