"""Deterministic policy for continuous (Box) actions: HADDPG, HATD3, MADDPG, MATD3."""

from __future__ import annotations

import gymnasium
import torch
import torch.nn as nn

from harl.models.base.plain_mlp import PlainMLP


class DeterministicPolicy(nn.Module):
    """``mu(o)``: an MLP whose (tanh) output is mapped affinely onto the Box bounds.

    Args:
        args: model keys ``hidden_sizes``, ``activation_func``, ``final_activation_func``
            (``tanh`` keeps the output inside the bounds).
        obs_space: Box of shape ``(d,)``.
        action_space: Box of shape ``(a,)`` with finite bounds.
        device: where the parameters live.
    """

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.spaces.Box,
        action_space: gymnasium.spaces.Box,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        super().__init__()
        sizes = [obs_space.shape[0], *args["hidden_sizes"], action_space.shape[0]]
        self.pi = PlainMLP(sizes, args["activation_func"], args["final_activation_func"])
        low = torch.as_tensor(action_space.low, dtype=torch.float32)
        high = torch.as_tensor(action_space.high, dtype=torch.float32)
        self.register_buffer("scale", (high - low) / 2)
        self.register_buffer("bias", (high + low) / 2)
        self.to(device)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Map observations ``(B, d)`` to actions ``(B, a)`` inside the bounds."""
        return self.scale * self.pi(obs) + self.bias
