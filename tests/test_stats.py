"""Aggregate statistics of harl.utils.stats: IQM, bootstrap intervals, probability of improvement."""

from __future__ import annotations

import numpy as np
import pytest

from harl.utils.stats import (
    bootstrap_ci,
    iqm,
    probability_of_improvement,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)

# --------------------------------------------------------------------------- iqm


def test_iqm_one_value_is_that_value():
    assert iqm(np.array([7.5])) == 7.5


def test_iqm_four_values_is_mean_of_middle_two():
    assert iqm(np.array([100.0, 1.0, 3.0, -50.0])) == pytest.approx(2.0)


def test_iqm_eight_values_matches_trim_mean_quarter():
    # scipy.stats.trim_mean(x, 0.25) drops 2 values at each end: mean of 3, 4, 5, 6.
    x = np.array([6.0, -1000.0, 4.0, 5.0, 1000.0, 3.0, 0.0, 9.0])
    assert iqm(x) == pytest.approx((3.0 + 4.0 + 5.0 + 6.0) / 4)


def test_iqm_five_values_uses_fractional_weights():
    # Sorted 1, 2, 4, 8, 16 own quantiles [0, .2], [.2, .4], ...; overlap with [.25, .75]
    # is 0, .15, .2, .15, 0, so weights 0.3, 0.4, 0.3 on 2, 4, 8.
    x = np.array([16.0, 1.0, 8.0, 2.0, 4.0])
    assert iqm(x) == pytest.approx(0.3 * 2 + 0.4 * 4 + 0.3 * 8)  # 4.6, not the median 4


def test_iqm_three_values_uses_fractional_weights():
    # Quantile intervals of thirds: overlaps 1/12, 1/3, 1/12 -> weights 1/6, 2/3, 1/6.
    assert iqm(np.array([0.0, 6.0, 60.0])) == pytest.approx(6.0 * 2 / 3 + 60.0 / 6)


def test_iqm_two_values_is_their_mean():
    assert iqm(np.array([1.0, 4.0])) == pytest.approx(2.5)


def test_iqm_ignores_order():
    rng = np.random.default_rng(3)
    x = rng.normal(size=11)
    assert iqm(x) == pytest.approx(iqm(rng.permutation(x)))
    assert iqm(x) == pytest.approx(iqm(x[::-1]))


def test_iqm_along_axis_matches_rowwise():
    rng = np.random.default_rng(4)
    table = rng.normal(size=(5, 7))
    rows = iqm(table, axis=-1)
    assert rows.shape == (5,)
    np.testing.assert_allclose(rows, [iqm(row) for row in table])
    cols = iqm(table, axis=0)
    np.testing.assert_allclose(cols, [iqm(col) for col in table.T])


def test_iqm_is_robust_to_one_outlier():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 1e9])
    assert iqm(x) == pytest.approx(4.5)


@pytest.mark.parametrize("bad", [np.array([]), np.array([1.0, np.nan]), np.array([np.inf, 1.0])])
def test_iqm_rejects_empty_and_non_finite(bad):
    with pytest.raises(ValueError):
        iqm(bad)


# --------------------------------------------------------------------------- bootstrap_ci


@pytest.mark.parametrize("statistic", [np.mean, iqm, np.median])
def test_bootstrap_ci_contains_point_estimate(statistic):
    x = np.random.default_rng(0).normal(loc=10.0, size=20)
    point, low, high = bootstrap_ci(x, statistic, n_boot=1000, seed=1)
    assert point == pytest.approx(float(statistic(x)))
    assert low < point < high


def test_bootstrap_ci_of_mean_is_near_normal_interval():
    x = np.random.default_rng(5).normal(size=200)
    point, low, high = bootstrap_ci(x, np.mean, n_boot=2000, seed=0)
    half_width = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)


def test_bootstrap_ci_narrows_with_more_seeds():
    rng = np.random.default_rng(6)
    few = rng.normal(size=3)
    many = rng.normal(size=50)
    for statistic in (np.mean, iqm):
        _, low_few, high_few = bootstrap_ci(few, statistic, n_boot=1000, seed=0)
        _, low_many, high_many = bootstrap_ci(many, statistic, n_boot=1000, seed=0)
        assert high_many - low_many < 0.8 * (high_few - low_few)


def test_bootstrap_ci_is_reproducible_per_seed():
    x = np.random.default_rng(7).normal(size=10)
    first = bootstrap_ci(x, iqm, n_boot=500, seed=42)
    assert bootstrap_ci(x, iqm, n_boot=500, seed=42) == first
    assert bootstrap_ci(x, iqm, n_boot=500, seed=43) != first


def test_bootstrap_ci_higher_confidence_is_wider():
    x = np.random.default_rng(8).normal(size=15)
    _, low90, high90 = bootstrap_ci(x, np.mean, confidence=0.90, seed=0)
    _, low99, high99 = bootstrap_ci(x, np.mean, confidence=0.99, seed=0)
    assert low99 < low90 and high90 < high99


@pytest.mark.parametrize("statistic", [np.mean, iqm])
def test_bootstrap_ci_of_constant_sample_has_zero_width(statistic):
    point, low, high = bootstrap_ci(np.full(9, 0.1), statistic, n_boot=300, seed=0)
    # Every replicate holds the same nine values, so the interval collapses onto the point.
    # Equal up to rounding only: the point (1 row) and the replicates (300 rows) go through
    # different matmul/sum kernels whose summation order differs between CPUs (0.1 vs
    # 0.10000000000000002 on an AVX2 EPYC). rel=1e-12 allows a few ulps, not a real width.
    assert low == pytest.approx(point, rel=1e-12, abs=0)
    assert high == pytest.approx(point, rel=1e-12, abs=0)
    assert point == pytest.approx(0.1, rel=1e-12, abs=0)


def test_bootstrap_ci_single_seed_has_zero_width():
    assert bootstrap_ci(np.array([3.0]), iqm, n_boot=50) == (3.0, 3.0, 3.0)


def test_bootstrap_ci_rejects_statistic_without_axis_reduction():
    with pytest.raises(ValueError, match="axis=-1"):
        bootstrap_ci(np.arange(5.0), lambda a, axis: a, n_boot=10)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(scores=np.array([])),
        dict(scores=np.array([1.0, np.nan, 2.0])),
        dict(scores=np.ones((3, 2))),
        dict(confidence=0.0),
        dict(confidence=1.0),
        dict(confidence=1.5),
        dict(n_boot=0),
        dict(n_boot=-3),
        dict(n_boot=2.5),
    ],
)
def test_bootstrap_ci_rejects_bad_inputs(kwargs):
    args = dict(scores=np.arange(6.0), statistic=iqm, n_boot=10)
    args.update(kwargs)
    with pytest.raises(ValueError):
        bootstrap_ci(**args)


# --------------------------------------------------------------------------- stratified


def test_stratified_with_one_task_matches_plain_bootstrap():
    scores = np.random.default_rng(9).normal(size=12)
    point, low, high = stratified_bootstrap_ci(scores[:, None], iqm, n_boot=2000, seed=0)
    plain_point, plain_low, plain_high = bootstrap_ci(scores, iqm, n_boot=2000, seed=1)
    assert point == pytest.approx(iqm(scores)) and point == pytest.approx(plain_point)
    assert scores.min() <= low < point < high <= scores.max()
    width, plain_width = high - low, plain_high - plain_low
    assert width == pytest.approx(plain_width, rel=0.2)
    assert low == pytest.approx(plain_low, abs=0.2 * plain_width)
    assert high == pytest.approx(plain_high, abs=0.2 * plain_width)


def test_stratified_point_is_statistic_of_pooled_scores():
    matrix = np.random.default_rng(10).normal(size=(5, 4)) + np.arange(4)
    point, low, high = stratified_bootstrap_ci(matrix, iqm, n_boot=500)
    assert point == pytest.approx(iqm(matrix.ravel()))
    assert low <= point <= high


def test_stratified_resamples_within_tasks():
    # Task 0 always scores 0 and task 1 always 10: a stratified replicate keeps 3 scores of
    # each task, so its mean is exactly 5. Pooled resampling would not.
    matrix = np.array([[0.0, 10.0]] * 3)
    assert stratified_bootstrap_ci(matrix, np.mean, n_boot=500) == (5.0, 5.0, 5.0)


def test_stratified_resamples_each_task_independently():
    # Every row sums to 1, so resampling whole rows (the same seeds for all tasks) would keep
    # the mean at exactly 0.5; independent draws per task must spread it.
    matrix = np.array([[0.0, 1.0], [1.0, 0.0]] * 3)
    point, low, high = stratified_bootstrap_ci(matrix, np.mean, n_boot=500)
    assert point == 0.5
    assert low < 0.45 and high > 0.55


def test_stratified_is_reproducible_per_seed():
    matrix = np.random.default_rng(11).normal(size=(4, 3))
    first = stratified_bootstrap_ci(matrix, np.mean, n_boot=300, seed=5)
    assert stratified_bootstrap_ci(matrix, np.mean, n_boot=300, seed=5) == first
    assert stratified_bootstrap_ci(matrix, np.mean, n_boot=300, seed=6) != first


@pytest.mark.parametrize(
    "matrix",
    [
        np.empty((0, 3)),
        np.empty((3, 0)),
        np.array([[1.0, np.nan], [2.0, 3.0]]),
        np.arange(4.0),
    ],
)
def test_stratified_rejects_bad_matrices(matrix):
    with pytest.raises(ValueError):
        stratified_bootstrap_ci(matrix, iqm, n_boot=10)


def test_stratified_rejects_bad_bootstrap_args():
    with pytest.raises(ValueError):
        stratified_bootstrap_ci(np.ones((2, 2)), iqm, n_boot=0)
    with pytest.raises(ValueError):
        stratified_bootstrap_ci(np.ones((2, 2)), iqm, confidence=-0.1)


# --------------------------------------------------------------------------- improvement


def _brute_force_improvement(x, y):
    wins = sum((xi > yj) + 0.5 * (xi == yj) for xi in x for yj in y)
    return wins / (len(x) * len(y))


def test_improvement_when_x_dominates():
    assert probability_of_improvement(np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0])) == 1.0
    assert probability_of_improvement(np.array([1.0, 2.0]), np.array([5.0, 6.0, 7.0])) == 0.0


def test_improvement_of_identical_samples_is_half():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0])
    assert probability_of_improvement(x, x.copy()) == pytest.approx(0.5)


def test_improvement_counts_ties_as_half():
    assert probability_of_improvement(np.array([2.0]), np.array([2.0])) == 0.5
    # x=2 vs y=(1, 2, 3): one win, one tie, one loss -> 1.5 / 3.
    assert probability_of_improvement(np.array([2.0]), np.array([1.0, 2.0, 3.0])) == 0.5
    # x=(2, 2) vs y=(2, 1): pairs 2>2 tie, 2>1 win, twice -> (0.5 + 1) * 2 / 4.
    assert probability_of_improvement(np.array([2.0, 2.0]), np.array([2.0, 1.0])) == 0.75


def test_improvement_hand_computed():
    # x=(1, 3, 5), y=(2, 3, 4, 6): 1 beats none; 3 beats 2, ties 3; 5 beats 2, 3, 4.
    # (0 + 1.5 + 3) / 12 = 0.375
    x, y = np.array([5.0, 1.0, 3.0]), np.array([6.0, 2.0, 4.0, 3.0])
    assert probability_of_improvement(x, y) == pytest.approx(0.375)
    assert probability_of_improvement(y, x) == pytest.approx(1 - 0.375)


def test_improvement_matches_brute_force_with_many_ties():
    rng = np.random.default_rng(12)
    for n, m in [(1, 1), (3, 7), (10, 4), (25, 25)]:
        x = rng.integers(0, 5, size=n).astype(float)
        y = rng.integers(0, 5, size=m).astype(float)
        assert probability_of_improvement(x, y) == pytest.approx(_brute_force_improvement(x, y))


def test_improvement_ci_contains_point_and_is_reproducible():
    rng = np.random.default_rng(13)
    x, y = rng.normal(0.5, 1.0, size=10), rng.normal(0.0, 1.0, size=8)
    point, low, high = probability_of_improvement_ci(x, y, n_boot=1000, seed=0)
    assert point == pytest.approx(_brute_force_improvement(x, y))
    assert 0.0 <= low < point < high <= 1.0
    assert probability_of_improvement_ci(x, y, n_boot=1000, seed=0) == (point, low, high)
    assert probability_of_improvement_ci(x, y, n_boot=1000, seed=1) != (point, low, high)


def test_improvement_ci_replicates_match_brute_force():
    # The vectorised bootstrap equals the brute-force statistic on the same resampled seeds.
    rng = np.random.default_rng(14)
    x = rng.integers(0, 4, size=6).astype(float)
    y = rng.integers(0, 4, size=5).astype(float)
    n_boot = 50
    draw = np.random.default_rng(3)
    x_index = draw.integers(0, x.size, size=(n_boot, x.size))
    y_index = draw.integers(0, y.size, size=(n_boot, y.size))
    replicates = [_brute_force_improvement(x[i], y[j]) for i, j in zip(x_index, y_index)]
    expected = np.percentile(replicates, [2.5, 97.5])
    _, low, high = probability_of_improvement_ci(x, y, n_boot=n_boot, seed=3)
    assert (low, high) == pytest.approx(tuple(expected))


def test_improvement_ci_of_dominating_sample_is_degenerate():
    assert probability_of_improvement_ci(np.array([5.0, 6.0]), np.array([1.0, 2.0, 3.0]), n_boot=200) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "x, y",
    [
        (np.array([]), np.array([1.0])),
        (np.array([1.0]), np.array([])),
        (np.array([np.nan, 1.0]), np.array([1.0])),
        (np.array([1.0]), np.array([2.0, np.nan])),
        (np.ones((2, 2)), np.array([1.0])),
    ],
)
def test_improvement_rejects_bad_inputs(x, y):
    with pytest.raises(ValueError):
        probability_of_improvement(x, y)
    with pytest.raises(ValueError):
        probability_of_improvement_ci(x, y, n_boot=10)


def test_improvement_ci_rejects_bad_bootstrap_args():
    x, y = np.array([1.0, 2.0]), np.array([0.0, 3.0])
    with pytest.raises(ValueError):
        probability_of_improvement_ci(x, y, n_boot=0)
    with pytest.raises(ValueError):
        probability_of_improvement_ci(x, y, confidence=1.0)
