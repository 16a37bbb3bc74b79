"""Trust-region helpers: flat parameter vectors, Fisher-vector products, CG (the KL divergences
themselves are in :mod:`harl.models.base.distributions`)."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from torch import nn


def flat_grad(grads: Sequence[torch.Tensor | None], params: Sequence[nn.Parameter]) -> torch.Tensor:
    """Concatenate gradients into one vector aligned with ``flat_params`` (unused params give 0)."""
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters of ``model`` as one detached vector."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def update_model(model: nn.Module, new_params: torch.Tensor) -> None:
    """Copy the flat vector ``new_params`` back into ``model``'s parameters."""
    torch.nn.utils.vector_to_parameters(new_params, model.parameters())


def fisher_vector_product_fn(
    mean_kl: torch.Tensor, params: Iterable[nn.Parameter], damping: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return ``v -> (F + damping I) v`` for the Fisher matrix ``F`` = Hessian of ``mean_kl``.

    ``mean_kl`` must be ``KL(detached(pi_theta) || pi_theta)`` averaged over the batch, built at
    the current parameters: its gradient is 0 there, and its Hessian is the Fisher information.
    The first derivative is taken once with ``create_graph``; each product is one more backward
    pass through it (Pearlmutter's trick), so no forward pass is repeated.
    """
    params = list(params)
    kl_grad = flat_grad(torch.autograd.grad(mean_kl, params, create_graph=True, allow_unused=True), params)

    def fvp(vector: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(kl_grad @ vector.detach(), params, retain_graph=True, allow_unused=True)
        return flat_grad(grads, params).detach() + damping * vector

    return fvp


def conjugate_gradient(
    matrix_vector_product: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    nsteps: int,
    residual_tol: float = 1e-10,
) -> torch.Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given only ``A v``."""
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x at x = 0
    p = b.clone()  # search direction
    r_dot_r = r @ r
    for _ in range(nsteps):
        if r_dot_r < residual_tol:
            break
        a_p = matrix_vector_product(p)
        alpha = r_dot_r / (p @ a_p)
        x += alpha * p
        r -= alpha * a_p
        new_r_dot_r = r @ r
        p = r + (new_r_dot_r / r_dot_r) * p
        r_dot_r = new_r_dot_r
    return x
