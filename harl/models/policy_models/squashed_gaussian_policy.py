"""Tanh-squashed Gaussian policy for continuous (Box) actions: HASAC."""

from __future__ import annotations

import math

import gymnasium
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Normal

from harl.models.base.plain_mlp import PlainMLP

# Keeps exp(log_std) away from 0 (log-prob blow-up) and from huge values (saturated tanh).
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class SquashedGaussianPolicy(nn.Module):
    """``a = bias + scale * tanh(u)``, ``u ~ N(mu(o), sigma(o))`` (SAC, Haarnoja et al. 2018).

    The log-probability is the density of ``tanh(u)`` in ``[-1, 1]^a``, before the affine map to
    the Box bounds (HARL's convention): the target entropy ``-a`` then means the same for every
    bound, and the tuned temperatures carry over.

    Args:
        args: model keys ``hidden_sizes``, ``activation_func``, ``final_activation_func`` (applied
            to the last hidden layer, as in HARL).
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
        hidden_sizes = list(args["hidden_sizes"])
        act_dim = action_space.shape[0]
        self.trunk = PlainMLP(
            [obs_space.shape[0], *hidden_sizes], args["activation_func"], args["final_activation_func"]
        )
        self.mu_layer = nn.Linear(hidden_sizes[-1], act_dim)
        self.log_std_layer = nn.Linear(hidden_sizes[-1], act_dim)
        low = torch.as_tensor(action_space.low, dtype=torch.float32)
        high = torch.as_tensor(action_space.high, dtype=torch.float32)
        self.register_buffer("scale", (high - low) / 2)
        self.register_buffer("bias", (high + low) / 2)
        self.to(device)

    def forward(
        self, obs: torch.Tensor, stochastic: bool = True, with_logprob: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sample (reparameterised) or take the mode.

        Args:
            obs: ``(B, d)``.
            stochastic: sample ``u`` with ``rsample`` (differentiable); else ``u = mu``.
            with_logprob: also return ``log pi(a|o)``.

        Returns:
            actions ``(B, a)`` inside the bounds, and ``log pi`` ``(B, 1)`` or ``None``.
        """
        features = self.trunk(obs)
        mu = self.mu_layer(features)
        log_std = self.log_std_layer(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
        dist = Normal(mu, log_std.exp())
        u = dist.rsample() if stochastic else mu
        logp = None
        if with_logprob:
            # change of variables for tanh: log pi(a) = log N(u) - sum log(1 - tanh(u)^2), with
            # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) to stay finite when |u| is large
            log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
            logp = (dist.log_prob(u) - log_det).sum(-1, keepdim=True)
        return self.bias + self.scale * torch.tanh(u), logp
