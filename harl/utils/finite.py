"""Stop training at the first NaN or infinity, before it reaches the parameters, the
environment or a checkpoint.

Every optimiser step goes through :func:`guarded_step`: a non-finite loss is never stepped on,
and parameters that became non-finite in the step stop the run. Runners check actions before
they reach the environment and the whole checkpoint state before it is written, and add which
agent and env step failed (:func:`blame`) to the one-paragraph error the command line prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


class NonFiniteError(RuntimeError):
    """A loss, parameter, action or checkpointed value became NaN or infinite."""


def _params(optimizer: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
    for group in optimizer.param_groups:
        yield from group["params"]


def check_parameters(params: Iterable[torch.Tensor], what: str) -> None:
    """Raise :class:`NonFiniteError` when any parameter holds a NaN or an infinity."""
    flags = [torch.isfinite(p).all() for p in params]
    if flags and not bool(torch.stack(flags).all()):  # one host-device sync for all tensors
        raise NonFiniteError(f"the {what} parameters became non-finite in an optimiser step")


def guarded_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, what: str) -> None:
    """``optimizer.step()`` for a finite ``loss`` whose step leaves the parameters finite.

    Call after ``loss.backward()`` (and gradient clipping); ``what`` names the network in the
    error ("actor", "critic", ...).
    """
    if not bool(torch.isfinite(loss).all()):
        raise NonFiniteError(f"the {what} loss is {loss.detach().float().mean().item()}")
    optimizer.step()
    check_parameters(_params(optimizer), what)


def check_actions(actions: Iterable[np.ndarray]) -> None:
    """Raise :class:`NonFiniteError` naming the first agent whose actions are not finite."""
    for agent_id, action in enumerate(actions):
        if np.issubdtype(np.asarray(action).dtype, np.floating) and not np.isfinite(action).all():
            raise NonFiniteError(f"agent {agent_id}'s actions are not finite")


# Elements checked at a time: torch.isfinite's temporaries take about 1.7x the input's bytes, which
# on a multi-GB replay buffer pushed a checkpointing process into the out-of-memory killer.
_FINITE_CHUNK = 1 << 24


def _all_finite(values: torch.Tensor) -> bool:
    flat = values.reshape(-1)
    return all(
        bool(torch.isfinite(flat[start : start + _FINITE_CHUNK]).all())
        for start in range(0, flat.numel(), _FINITE_CHUNK)
    )


def non_finite_entries(state: Any, prefix: str = "") -> list[str]:
    """Paths (``algorithm/critic/...``) of the tensors, arrays and floats in ``state`` that hold a
    NaN or an infinity. Large tensors are checked in chunks, so the check needs little memory."""
    if isinstance(state, np.ndarray):
        if not np.issubdtype(state.dtype, np.floating):
            return []
        state = torch.from_numpy(np.ascontiguousarray(state))
    if isinstance(state, torch.Tensor):
        finite = not state.is_floating_point() or _all_finite(state)
        return [] if finite else [prefix]
    if isinstance(state, float):
        return [] if np.isfinite(state) else [prefix]
    if isinstance(state, Mapping):
        items: Iterable[tuple[Any, Any]] = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return []
    return [
        path for key, value in items for path in non_finite_entries(value, f"{prefix}/{key}" if prefix else str(key))
    ]


# What torch says when a network's output is NaN or infinite: a distribution's argument check
# (ValueError) and multinomial sampling (RuntimeError).
_TORCH_DISTRIBUTION_CHECK = "to satisfy the constraint"
_TORCH_MULTINOMIAL_CHECK = "probability tensor contains either"


def _from_torch_error(err: Exception) -> NonFiniteError | None:
    """The :class:`NonFiniteError` behind torch's refusal of a non-finite network output, or
    ``None`` when ``err`` is something else."""
    first_line = str(err).splitlines()[0] if str(err) else ""
    if isinstance(err, ValueError) and _TORCH_DISTRIBUTION_CHECK in first_line:
        # "Expected parameter loc (Tensor of shape (400, 5)) of distribution ..."
        return NonFiniteError(f"the policy's output is not finite ({first_line.split(' of distribution')[0]})")
    if isinstance(err, RuntimeError) and _TORCH_MULTINOMIAL_CHECK in first_line:
        return NonFiniteError("the policy's action probabilities are not finite")
    return None


@contextmanager
def torch_refusals_as_non_finite() -> Iterator[None]:
    """Raise torch's refusal of a non-finite network output in the block as a
    :class:`NonFiniteError`; other errors pass through unchanged."""
    try:
        yield
    except (ValueError, RuntimeError) as err:
        translated = _from_torch_error(err)
        if translated is None:
            raise
        raise translated from None


@contextmanager
def blame(who: str) -> Iterator[None]:
    """Prefix a :class:`NonFiniteError` raised in the block, or torch's refusal of a non-finite
    network output, with ``who`` (e.g. "agent 2")."""
    try:
        with torch_refusals_as_non_finite():
            yield
    except NonFiniteError as err:
        raise NonFiniteError(f"{who}: {err}") from None
