"""Squashed Gaussian actor for HAQO's policy-class ablation (``actor: gaussian``).

Same observation base, action codec, candidates and weights as the diffusion actor
(:mod:`harl.models.policy_models.diffusion_policy`); only the policy class changes. The latent
``u ~ N(mu(o), sigma(o))`` is squashed, ``x = tanh(u) in (-1, 1)^dim``, and decoded by the
:class:`ActionCodec` (Box: affine map; Discrete: arg-max over the available actions, which
``tanh`` does not change). The candidates' latents are the training targets, so the weighted
log-likelihood, the entropy and the KL are exact:

* loss of a candidate: ``-log N(u; mu, sigma)`` (the ``tanh`` Jacobian does not depend on the
  parameters once ``u`` is fixed);
* entropy of ``x``: ``H(u) + E_u[sum log(1 - tanh(u)^2)]``, the Gaussian part in closed form,
  the Jacobian part with reparameterised samples;
* ``KL(pi_old || pi)`` between the two Gaussians over ``u``, equal to the KL of ``x`` (``tanh`` is
  a bijection) and an upper bound for a Discrete arg-max.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import gymnasium
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from harl.models.base.mlp import MLPBase
from harl.models.policy_models.candidate_policy import ActionCodec, CandidatePolicy, CandidateSample
from harl.models.policy_models.squashed_gaussian_policy import LOG_STD_MAX, LOG_STD_MIN
from harl.utils.models_tools import init_linear

Tensor = torch.Tensor


def log_tanh_jacobian(u: Tensor) -> Tensor:
    """``sum log(1 - tanh(u)^2)`` over the last dimension, finite for large ``|u|``."""
    return (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)


class GaussianRecord(NamedTuple):
    """The sampling actor's latent Gaussian, ``(*lead, dim)`` each."""

    mu: Tensor
    log_std: Tensor


class _GaussianPass:
    """A pass without denoising steps: the candidates are drawn when it starts."""

    steps_left = 0

    def __init__(self, policy: GaussianCandidatePolicy, obs: Tensor, n: int, record: bool) -> None:
        mu, log_std = policy.distribution(obs)
        self.u = mu + log_std.exp() * torch.randn(n, *mu.shape, device=mu.device)
        self.record = GaussianRecord(mu, log_std) if record else None

    def step(self) -> None:
        raise RuntimeError("a Gaussian sampling pass has no denoising steps")

    def finish(self, available: Tensor | None, targets: bool = True) -> CandidateSample:
        return CandidateSample(torch.tanh(self.u), self.u if targets else None, self.record)


class GaussianCandidatePolicy(CandidatePolicy):
    """``tanh(u)``, ``u ~ N(mu(o), sigma(o))`` with ``MLPBase`` then linear ``mu`` and ``log sigma``.

    Args:
        args: model keys ``hidden_sizes``, ``activation_func``, ``use_feature_normalization``,
            ``initialization_method``, ``gain`` (of the two output layers).
        obs_space: Box ``(d,)``.
        act_space: 1-D Box with finite bounds, or Discrete.
        device: where the parameters live.
    """

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.spaces.Box,
        act_space: gymnasium.Space,
        device: torch.device | str = torch.device("cpu"),
    ) -> None:
        super().__init__()
        self.codec = ActionCodec(act_space)
        hidden = args["hidden_sizes"][-1]
        self.base = MLPBase(args, obs_space.shape)
        self.mu_layer = init_linear(hidden, self.codec.dim, args["initialization_method"], args["gain"])
        self.log_std_layer = init_linear(hidden, self.codec.dim, args["initialization_method"], args["gain"])
        self.to(device)

    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``mu`` and ``log sigma`` (clamped to the squashed Gaussian's range), ``(*lead, dim)``."""
        features = self.base(obs)
        return self.mu_layer(features), self.log_std_layer(features).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def start_sampling(self, obs: Tensor, n: int, record: bool = False) -> _GaussianPass:
        return _GaussianPass(self, obs, n, record)

    @torch.no_grad()
    def eval_actions(self, obs: Tensor, available: Tensor | None = None) -> Tensor:
        """``tanh(mu(o))``, the squashed mean (HASAC's deterministic action; for Discrete the
        codec's arg-max over the available actions)."""
        return torch.tanh(self.distribution(obs)[0])

    def surrogate_losses(
        self, obs: Tensor, targets: Tensor, available: Tensor | None, n_entropy: int
    ) -> tuple[Tensor, Tensor]:
        """``-log N(u; mu, sigma)`` of the candidates' latents ``(C, B)`` and ``-H(x | o)`` ``(B,)``
        (``n_entropy`` samples for the Jacobian part of the squashed entropy)."""
        mu, log_std = self.distribution(obs)
        dist = Normal(mu, log_std.exp())
        nll = -dist.log_prob(targets).sum(-1)
        entropy = dist.entropy().sum(-1) + log_tanh_jacobian(dist.rsample((n_entropy,))).mean(0)
        return nll, -entropy

    def kl_from_record(self, obs: Tensor, record: GaussianRecord) -> Tensor:
        """Exact ``KL(N_old || N)`` of the latent, summed over dimensions: ``(*lead,)``."""
        mu, log_std = self.distribution(obs)
        old = Normal(record.mu, record.log_std.exp())
        return kl_divergence(old, Normal(mu, log_std.exp())).sum(-1)
