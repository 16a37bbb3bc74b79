"""Coverage measures shared by the occupation game and MPE's landmark coverage (paper Figs. 1, 2, 5)."""

from __future__ import annotations

import numpy as np


def occupancy(positions: np.ndarray, targets: np.ndarray, radius: float) -> np.ndarray:
    """``(K,)`` bool: some agent of ``positions (N, 2)`` lies within ``radius`` of target ``k``."""
    distances = np.linalg.norm(positions[:, None, :] - targets[None, :, :], axis=-1)
    return (distances <= radius).any(axis=0)


def balance(held_steps: np.ndarray) -> float:
    """Entropy of the time each target was held, over ``log K``: 1 when every target was held
    equally long, 0 when one target or none was held."""
    total = held_steps.sum()
    if total <= 0 or len(held_steps) < 2:
        return 0.0
    share = held_steps[held_steps > 0] / total
    return float(-(share * np.log(share)).sum() / np.log(len(held_steps))) + 0.0  # + 0.0: no -0.0


def coverage_metrics(held_steps: np.ndarray, steps: int, prefix: str) -> dict[str, float]:
    """An episode's ``coverage`` (mean share of targets held per step), ``balance`` and
    ``<prefix>_<k>`` (share of steps target ``k`` was held), from the steps each was held."""
    shares = held_steps / max(steps, 1)
    return {
        "coverage": float(shares.mean()),
        "balance": balance(held_steps),
        **{f"{prefix}_{k}": float(s) for k, s in enumerate(shares)},
    }


def coverage_metric_names(n_targets: int, prefix: str) -> tuple[str, ...]:
    """The names :func:`coverage_metrics` returns, in order."""
    return ("coverage", "balance") + tuple(f"{prefix}_{k}" for k in range(n_targets))
