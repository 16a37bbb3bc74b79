"""Running normaliser for value targets (HARL's ``ValueNorm``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from harl.utils.models_tools import ArrayLike, to_tensor


class ValueNorm(nn.Module):
    """Exponential running mean/variance of the returns, with Adam-style debiasing.

    The statistics are registered buffers named as HARL's (``running_mean``, ``running_mean_sq``,
    ``debiasing_term``), so ``state_dict``/``load_state_dict`` round-trip through ``nn.Module``
    and HARL's ``value_normalizer.pt`` files load unchanged.

    Args:
        input_shape: shape of one value (1 for a scalar critic).
        norm_axes: how many leading axes are batch axes averaged over in ``update``.
        beta: decay of the running statistics.
        per_element_update: decay by ``beta ** batch_size`` instead of ``beta`` per update.
        epsilon: lower bound of the debiasing term (avoids dividing by ~0 before the first update).
        device: where the statistics live.
    """

    def __init__(
        self,
        input_shape: int | tuple[int, ...],
        norm_axes: int = 1,
        beta: float = 0.99999,
        per_element_update: bool = False,
        epsilon: float = 1e-5,
        device: torch.device | str = torch.device("cpu"),
    ) -> None:
        super().__init__()
        self.norm_axes = norm_axes
        self.beta = beta
        self.per_element_update = per_element_update
        self.epsilon = epsilon
        self.device = torch.device(device)
        self.register_buffer("running_mean", torch.zeros(input_shape, device=self.device))
        self.register_buffer("running_mean_sq", torch.zeros(input_shape, device=self.device))
        self.register_buffer("debiasing_term", torch.tensor(0.0, device=self.device))

    def running_mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Debiased mean and variance; the variance is floored at 1e-2 as in HARL."""
        debias = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / debias
        var = (self.running_mean_sq / debias - mean**2).clamp(min=1e-2)
        return mean, var

    @torch.no_grad()
    def update(self, input_vector: ArrayLike) -> None:
        """Fold a batch ``(*batch, *input_shape)`` of targets into the running statistics."""
        x = to_tensor(input_vector, self.device)
        batch_dims = tuple(range(self.norm_axes))
        weight = self.beta
        if self.per_element_update:
            weight = self.beta ** int(np.prod(x.shape[: self.norm_axes]))
        self.running_mean.mul_(weight).add_(x.mean(dim=batch_dims) * (1.0 - weight))
        self.running_mean_sq.mul_(weight).add_((x**2).mean(dim=batch_dims) * (1.0 - weight))
        self.debiasing_term.mul_(weight).add_(1.0 - weight)

    def normalize(self, input_vector: ArrayLike) -> ArrayLike:
        """``(x - mean) / std``; returns the input's type (numpy in, numpy out)."""
        mean, var = self.running_mean_var()
        out = (to_tensor(input_vector, self.device) - mean) / torch.sqrt(var)
        return _like(out, input_vector)

    def denormalize(self, input_vector: ArrayLike) -> ArrayLike:
        """``x * std + mean``; returns the input's type (numpy in, numpy out)."""
        mean, var = self.running_mean_var()
        out = to_tensor(input_vector, self.device) * torch.sqrt(var) + mean
        return _like(out, input_vector)


def _like(out: torch.Tensor, reference: ArrayLike) -> ArrayLike:
    if isinstance(reference, np.ndarray):
        return out.detach().cpu().numpy().astype(reference.dtype, copy=False)
    return out
