"""Action distribution heads (HARL's ``Categorical`` and ``DiagGaussian``).

Conventions shared by both distributions:
``sample()``/``mode()`` return ``(B, a)``; ``log_probs(actions)`` returns one log-probability per
action dimension, ``(B, 1)`` for Discrete and ``(B, a)`` for Box, so ``action_aggregation`` can
combine per-dimension ratios; ``entropy()`` returns ``(B,)`` summed over dimensions.
"""

from __future__ import annotations

import torch
from torch import nn

from harl.utils.models_tools import init_linear

# Logit given to unavailable actions: exp(-1e10 - max) underflows to exactly 0 in float32.
UNAVAILABLE_LOGIT = -1e10


def masked_entropy(log_probs: torch.Tensor, available: torch.Tensor | None) -> torch.Tensor:
    """``-sum_{a available} p(a) log p(a)``, ``(*lead,)``."""
    terms = log_probs.exp() * log_probs
    if available is not None:
        terms = terms.masked_fill(~available.bool(), 0.0)
    return -terms.sum(-1)


def masked_kl(old_log_probs: torch.Tensor, new_log_probs: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
    """``KL(p_old || p_new) = sum_{a available} p_old(a) (log p_old(a) - log p_new(a))``, ``(*lead,)``."""
    terms = old_log_probs.exp() * (old_log_probs - new_log_probs)
    return terms.masked_fill(~available.bool(), 0.0).sum(-1)


class FixedCategorical(torch.distributions.Categorical):
    """Categorical whose samples and log-probabilities keep a trailing action dimension."""

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return super().sample(sample_shape).unsqueeze(-1)

    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        return super().log_prob(actions.squeeze(-1).long()).unsqueeze(-1)

    def mode(self) -> torch.Tensor:
        return self.probs.argmax(dim=-1, keepdim=True)


class FixedNormal(torch.distributions.Normal):
    """Diagonal Gaussian with per-dimension log-probabilities and summed entropy."""

    def log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        return super().log_prob(actions)

    def entropy(self) -> torch.Tensor:
        return super().entropy().sum(-1)

    def mode(self) -> torch.Tensor:
        return self.mean


class Categorical(nn.Module):
    """Linear layer producing logits; unavailable actions get logit ``-1e10`` (probability 0)."""

    def __init__(self, num_inputs: int, num_outputs: int, initialization_method: str, gain: float) -> None:
        super().__init__()
        self.linear = init_linear(num_inputs, num_outputs, initialization_method, gain)

    def forward(self, x: torch.Tensor, available_actions: torch.Tensor | None = None) -> FixedCategorical:
        """Distribution over ``num_outputs`` actions; ``available_actions`` is a ``(B, n)`` 0/1 mask."""
        logits = self.linear(x)
        if available_actions is not None:
            logits = logits.masked_fill(available_actions == 0, UNAVAILABLE_LOGIT)
        return FixedCategorical(logits=logits)


class DiagGaussian(nn.Module):
    """Linear layer producing the mean; a state-independent learnt std.

    HARL's parametrisation keeps the std in ``(0, std_y_coef)``:
    ``std = sigmoid(log_std / std_x_coef) * std_y_coef`` with ``log_std`` initialised to
    ``std_x_coef`` (so the initial std is ``sigmoid(1) * std_y_coef``).
    """

    def __init__(self, num_inputs: int, num_outputs: int, initialization_method: str, gain: float, args: dict) -> None:
        super().__init__()
        self.std_x_coef = args["std_x_coef"]
        self.std_y_coef = args["std_y_coef"]
        self.fc_mean = init_linear(num_inputs, num_outputs, initialization_method, gain)
        self.log_std = nn.Parameter(torch.ones(num_outputs) * self.std_x_coef)

    def std(self) -> torch.Tensor:
        """Current standard deviation, ``(num_outputs,)``."""
        return torch.sigmoid(self.log_std / self.std_x_coef) * self.std_y_coef

    def forward(self, x: torch.Tensor, available_actions: torch.Tensor | None = None) -> FixedNormal:
        """Gaussian over a ``num_outputs``-dimensional action; ``available_actions`` is ignored."""
        mean = self.fc_mean(x)
        return FixedNormal(mean, self.std().expand_as(mean))


def kl_divergence(old_dist: FixedCategorical | FixedNormal, new_dist: FixedCategorical | FixedNormal) -> torch.Tensor:
    """Exact ``KL(old || new)`` per sample, ``(B,)``, summed over action dimensions.

    Categorical: ``sum_a p_old(a) (log p_old(a) - log p_new(a))``; actions masked out of both
    distributions have ``p_old = 0`` and contribute 0.
    Diagonal Gaussian: the closed form, computed in float64 as HARL does to keep the tiny KLs
    of a trust-region step accurate.
    """
    if isinstance(old_dist, FixedCategorical):
        log_p, log_q = old_dist.logits, new_dist.logits  # torch stores normalised log-probs here
        return (old_dist.probs * (log_p - log_q)).sum(-1)
    if isinstance(old_dist, FixedNormal):
        mu_p, std_p = old_dist.loc.double(), old_dist.scale.double()
        mu_q, std_q = new_dist.loc.double(), new_dist.scale.double()
        var_ratio = (std_p / std_q) ** 2
        mean_term = ((mu_p - mu_q) / std_q) ** 2
        return (0.5 * (var_ratio + mean_term - 1.0 - var_ratio.log())).sum(-1).to(new_dist.loc.dtype)
    raise TypeError(f"no KL divergence for {type(old_dist).__name__}")


def detach_distribution(dist: FixedCategorical | FixedNormal) -> FixedCategorical | FixedNormal:
    """A copy of ``dist`` whose parameters carry no gradient (the "old" policy in a KL)."""
    if isinstance(dist, FixedCategorical):
        return FixedCategorical(logits=dist.logits.detach())
    if isinstance(dist, FixedNormal):
        return FixedNormal(dist.loc.detach(), dist.scale.detach())
    raise TypeError(f"cannot detach {type(dist).__name__}")
