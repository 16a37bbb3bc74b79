"""Aggregate statistics for comparing RL runs over a few seeds.

A handful of seeds per task is the norm, so a plain mean is sensitive to one lucky or unlucky
run and a bare number hides how uncertain it is. Following the recommendations of Agarwal et
al. (2021), "Deep Reinforcement Learning at the Edge of the Statistical Precipice", this
module offers:

* :func:`iqm`: the interquartile mean, robust to outlying seeds yet less noisy than the median;
* :func:`bootstrap_ci`: a percentile bootstrap interval over the seeds of one task;
* :func:`stratified_bootstrap_ci`: the same for an aggregate over tasks, resampling seeds
  within each task so that every replicate keeps the task mix;
* :func:`probability_of_improvement` and :func:`probability_of_improvement_ci`: how likely a
  run of algorithm X beats a run of algorithm Y on a task.

Everything is numpy only and vectorised: a bootstrap draws one index matrix of shape
``(n_boot, n)`` and evaluates the statistic on all replicates at once, so a statistic passed
to the bootstrap functions must reduce along ``axis=-1`` when called as
``statistic(samples, axis=-1)`` (``np.mean``, ``np.median`` and :func:`iqm` all do).
Scores must be finite: NaN or infinity raises ``ValueError``, as do empty inputs.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Statistic = Callable[..., np.ndarray]


# --------------------------------------------------------------------------- validation


def _scores(values: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """``values`` as a float array of ``ndim`` dimensions, non-empty and finite."""
    array = np.asarray(values, dtype=float)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: need at least one score")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _check_bootstrap_args(n_boot: int, confidence: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)):
        raise ValueError(f"n_boot must be an integer, got {n_boot!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not (isinstance(confidence, (int, float, np.floating)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _apply(statistic: Statistic, samples: np.ndarray) -> np.ndarray:
    """``statistic`` of each row of the 2-D ``samples``, checked to be one value per row."""
    values = np.asarray(statistic(samples, axis=-1), dtype=float)
    if values.shape != samples.shape[:1]:
        raise ValueError(
            "statistic must reduce a 2-D array along axis=-1 when called as "
            f"statistic(samples, axis=-1); for input shape {samples.shape} it returned shape "
            f"{values.shape} instead of {samples.shape[:1]}"
        )
    return values


def _interval(point: float, replicates: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """``(point, low, high)`` with the percentile interval of the bootstrap ``replicates``."""
    alpha = 1.0 - confidence
    low, high = np.percentile(replicates, [100.0 * alpha / 2, 100.0 * (1.0 - alpha / 2)])
    return float(point), float(low), float(high)


# --------------------------------------------------------------------------- IQM


def _iqm_weights(n: int) -> np.ndarray:
    """Weight of each of ``n`` sorted values in the interquartile mean (they sum to 1).

    The i-th smallest value (0-based) owns the quantile interval ``[i/n, (i+1)/n]``; its weight
    is the length of that interval's overlap with ``[0.25, 0.75]``, divided by 0.5.
    """
    edges = np.clip(np.arange(n + 1) / n, 0.25, 0.75)
    return np.diff(edges) / 0.5


def iqm(scores: np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean: the mean of the middle 50% of the scores.

    It discards the best and worst quarter of the runs, so one outlying seed cannot dominate,
    while averaging more values than the median and so being less noisy.

    Definition: sort the n values and let the i-th smallest (i = 0..n-1) stand for the quantile
    interval ``[i/n, (i+1)/n]`` of the sample; the IQM is the mean of the sample restricted to
    quantiles ``[0.25, 0.75]``, i.e. ``sum_i w_i * x_(i)`` with
    ``w_i = 2 * |[i/n, (i+1)/n] ∩ [0.25, 0.75]|``. Values straddling a quartile count with the
    fraction of them inside, so it is defined for every n >= 1: n = 1 gives the value, n = 2
    the mean, n = 4 the mean of the middle two, n = 5 weights ``0.3, 0.4, 0.3`` on the middle
    three. When n is divisible by 4 it equals ``scipy.stats.trim_mean(x, 0.25)`` (drop n/4
    values at each end); otherwise it differs from trim_mean, which drops ``floor(n/4)``.

    ``axis=None`` reduces all values of ``scores`` and returns a float; an integer ``axis``
    reduces along that axis and returns an array (how the bootstrap functions call it).
    """
    array = np.asarray(scores, dtype=float)
    if axis is None:
        array = array.reshape(-1)
        axis = -1
        scalar = True
    else:
        scalar = False
    if array.ndim == 0 or array.shape[axis] == 0 or array.size == 0:
        raise ValueError("iqm of an empty array: need at least one score")
    if not np.isfinite(array).all():
        raise ValueError("iqm: scores hold NaN or infinite values")
    ordered = np.moveaxis(np.sort(array, axis=axis), axis, -1)
    result = ordered @ _iqm_weights(ordered.shape[-1])
    return float(result) if scalar else result


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ci(
    scores: np.ndarray, statistic: Statistic, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap interval of ``statistic`` over one task's seeds.

    ``scores`` is a 1-D array with one score per seed. Each of ``n_boot`` replicates resamples
    the seeds with replacement (one ``(n_boot, n)`` index matrix drawn with
    ``np.random.default_rng(seed)``); the interval is the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` percentiles of the replicate statistics. ``statistic`` must
    reduce along ``axis=-1`` (``np.mean``, ``np.median``, :func:`iqm`).

    Returns ``(point, low, high)`` where ``point`` is ``statistic`` of ``scores`` itself.
    """
    data = _scores(scores, "scores", 1)
    _check_bootstrap_args(n_boot, confidence)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, data.size, size=(n_boot, data.size))
    point = _apply(statistic, data[np.newaxis, :])[0]
    return _interval(point, _apply(statistic, data[index]), confidence)


def stratified_bootstrap_ci(
    score_matrix: np.ndarray, statistic: Statistic, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Point estimate and percentile interval of an aggregate over tasks.

    ``score_matrix`` has shape ``(n_seeds, n_tasks)``. Each replicate resamples the seeds with
    replacement independently within every task (stratified by task, so each replicate keeps
    ``n_seeds`` scores of every task), flattens the replicate to ``n_seeds * n_tasks`` pooled
    scores and applies ``statistic`` to them; ``point`` is ``statistic`` of all the scores
    pooled. Scores are best normalised per task first so that tasks are comparable. NaN,
    infinity or an empty matrix raise ``ValueError``.

    Returns ``(point, low, high)``.
    """
    data = _scores(score_matrix, "score_matrix", 2)
    _check_bootstrap_args(n_boot, confidence)
    n_seeds, n_tasks = data.shape
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n_seeds, size=(n_boot, n_seeds, n_tasks))
    replicates = data[rows, np.arange(n_tasks)].reshape(n_boot, n_seeds * n_tasks)
    point = _apply(statistic, data.reshape(1, -1))[0]
    return _interval(point, _apply(statistic, replicates), confidence)


# --------------------------------------------------------------------------- improvement


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 for each row pair of the 2-D ``x`` (b, n) and ``y`` (b, m).

    Uses ranks rather than an (n, m) comparison table: with midranks of the pooled row (ties
    share the mean of their ranks), the Mann-Whitney U of x is ``sum of x's ranks - n(n+1)/2``,
    which counts every pair with ``x > y`` as 1 and every tie as 1/2.
    """
    n, m = x.shape[-1], y.shape[-1]
    pooled = np.concatenate([x, y], axis=-1)
    order = np.argsort(pooled, axis=-1, kind="stable")
    ordered = np.take_along_axis(pooled, order, axis=-1)
    total = n + m
    position = np.arange(total)
    # First and last sorted position of each value's tie group.
    starts_group = np.ones_like(ordered, dtype=bool)
    starts_group[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = np.maximum.accumulate(np.where(starts_group, position, 0), axis=-1)
    ends_group = np.ones_like(ordered, dtype=bool)
    ends_group[:, :-1] = ordered[:, :-1] != ordered[:, 1:]
    last = np.minimum.accumulate(np.where(ends_group, position, total - 1)[:, ::-1], axis=-1)[:, ::-1]
    midrank = (first + last) / 2.0 + 1.0  # 1-based ranks
    rank_sum_x = np.where(order < n, midrank, 0.0).sum(axis=-1)
    u_statistic = rank_sum_x - n * (n + 1) / 2.0
    return u_statistic / (n * m)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """Probability that a run of X scores higher than a run of Y on one task.

    ``x`` and ``y`` are 1-D arrays of per-seed scores of the two algorithms. Returns
    ``(#{(i, j): x_i > y_j} + #{(i, j): x_i == y_j} / 2) / (n * m)``, the Mann-Whitney U
    statistic of x divided by ``n * m``: 1.0 when every x beats every y, 0.5 for identical
    samples. Unlike a difference of means it says how often X wins, not by how much.
    """
    xs = _scores(x, "x", 1)
    ys = _scores(y, "y", 1)
    return float(_improvement(xs[np.newaxis], ys[np.newaxis])[0])


def probability_of_improvement_ci(
    x: np.ndarray, y: np.ndarray, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """:func:`probability_of_improvement` with a percentile bootstrap interval.

    Each replicate resamples the seeds of ``x`` and of ``y`` independently with replacement
    (index matrices of shapes ``(n_boot, n)`` and ``(n_boot, m)`` from
    ``np.random.default_rng(seed)``). Returns ``(point, low, high)``.
    """
    xs = _scores(x, "x", 1)
    ys = _scores(y, "y", 1)
    _check_bootstrap_args(n_boot, confidence)
    rng = np.random.default_rng(seed)
    x_index = rng.integers(0, xs.size, size=(n_boot, xs.size))
    y_index = rng.integers(0, ys.size, size=(n_boot, ys.size))
    point = _improvement(xs[np.newaxis], ys[np.newaxis])[0]
    return _interval(point, _improvement(xs[x_index], ys[y_index]), confidence)
