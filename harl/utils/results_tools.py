"""Aggregate finished runs: the final evaluation of every seed, the mean and spread over seeds,
and a mean-and-range learning-curve picture.

The headline number is the evaluation return, except for the StarCraft family (``smac``,
``smacv2``, ``smax``), which the paper reports in win rate (``eval_win_rate``), and Football, in
score rate (``eval_score_rate``)."""

from __future__ import annotations

import csv
import fnmatch
import glob
import io
import os
from collections import defaultdict
from typing import NamedTuple

import numpy as np

from harl.utils.errors import ConfigError
from harl.utils.files import read_text
from harl.utils.plotting import plt, save_figure

# Environments the paper reports in a rate, with its progress.csv column; the others in return.
RATE_METRICS = {
    "smac": "eval_win_rate",
    "smacv2": "eval_win_rate",
    "smax": "eval_win_rate",
    "football": "eval_score_rate",
}


def headline_metric(env: str) -> str:
    """The ``progress.csv`` column a run of ``env`` is summarised by."""
    return RATE_METRICS.get(env, "eval_episode_return")


class RunResult(NamedTuple):
    """One run directory's final numbers."""

    group: str  # <env>/<task>/<algo>/<exp_name>
    seed_dir: str
    env_steps: int
    metric: str  # the progress.csv column of final_eval and curve
    final_eval: float
    wall_time_s: float
    curve: tuple[np.ndarray, np.ndarray]  # env steps, metric


def read_run(run_dir: str, metric: str = "") -> RunResult | None:
    """The final row of a run with at least one evaluation of ``metric`` (default: the env's
    headline metric), or None. Its group is the layout's ``<env>/<task>/<algo>/<exp_name>`` above
    the seed directory, whatever root it was found from."""
    group = os.path.join(*os.path.abspath(os.path.dirname(run_dir)).split(os.sep)[-4:])
    metric = metric or headline_metric(group.split(os.sep)[0])
    path, rows = _progress_rows(run_dir)
    rows = [(line, r) for line, r in rows if r.get(metric)]
    if not rows:
        return None
    steps = np.array([_number(path, line, r, "env_steps") for line, r in rows])
    values = np.array([_number(path, line, r, metric) for line, r in rows])
    return RunResult(
        group,
        os.path.basename(run_dir),
        int(steps[-1]),
        metric,
        float(values[-1]),
        _number(path, *rows[-1], "wall_time"),
        (steps, values),
    )


def _progress_rows(run_dir: str) -> tuple[str, list[tuple[int, dict]]]:
    """``progress.csv``'s path and its rows with their line numbers.

    Raises:
        ConfigError: the file cannot be read (permissions, a directory, not UTF-8 text).
    """
    path = os.path.join(run_dir, "progress.csv")
    reader = csv.DictReader(io.StringIO(read_text(path, "progress.csv"), newline=""))
    try:
        return path, [(reader.line_num, row) for row in reader]
    except csv.Error as err:
        raise ConfigError(f"{path}:{reader.line_num}: malformed CSV: {err}") from None


def _number(path: str, line: int, row: dict, column: str) -> float:
    """``row[column]`` as a number, or ConfigError naming the file, line and column."""
    try:
        return float(row[column])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(
            f"{path}:{line}: column {column} is {row.get(column)!r}, not a number "
            "(a damaged progress.csv: repair or remove the run)"
        ) from None


def diagnostics(run_dir: str, wanted: dict[str, tuple[str, str]]) -> dict[str, float]:
    """``label -> value`` for each ``label: (mean | max, pattern)``: the mean or max of every
    logged value of the ``progress.csv`` columns matching ``pattern`` (``*`` = any text, e.g.
    ``agent*/kl``) over the whole run; labels with no logged value are left out."""
    path, numbered = _progress_rows(run_dir)
    rows = [row for _, row in numbered]
    out = {}
    for label, (aggregate, pattern) in wanted.items():
        columns = fnmatch.filter([c for c in rows[0].keys() if c is not None], pattern) if rows else []
        values = [_number(path, line, r, c) for line, r in numbered for c in columns if r.get(c)]
        if values:
            out[label] = float(np.mean(values) if aggregate == "mean" else np.max(values))
    return out


def collect(results_root: str) -> dict[str, list[RunResult]]:
    """Every run under ``results_root`` grouped by ``<env>/<task>/<algo>/<exp_name>``."""
    groups: dict[str, list[RunResult]] = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(results_root, "**", "progress.csv"), recursive=True)):
        run = read_run(os.path.dirname(path))
        if run is not None:
            groups[run.group].append(run)
    return dict(groups)


def markdown_table(groups: dict[str, list[RunResult]]) -> str:
    """Per group: the metric, seeds, env steps, per-seed final evaluations, mean, std, min, max."""
    lines = [
        "| run group | final evaluation | seeds | env steps | per seed | mean | std | min | max |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group, runs in groups.items():
        finals = np.array([r.final_eval for r in runs])
        per_seed = ", ".join(f"{r.seed_dir.split('-')[1].lstrip('0') or '0'}: {r.final_eval:.2f}" for r in runs)
        label = runs[0].metric.removeprefix("eval_").replace("_", " ")
        lines.append(
            f"| {group} | {label} | {len(runs)} | {min(r.env_steps for r in runs)} | {per_seed} | "
            f"{finals.mean():.2f} | {finals.std():.2f} | {finals.min():.2f} | {finals.max():.2f} |"
        )
    return "\n".join(lines)


def _common_curve(runs: list[RunResult]) -> tuple[list[float], np.ndarray]:
    """The evaluation steps every run has, and the runs' values there ``(runs, steps)``."""
    common = sorted(set.intersection(*(set(r.curve[0].tolist()) for r in runs)))
    return common, np.array([[dict(zip(*r.curve))[s] for s in common] for r in runs])


def plot_group(runs: list[RunResult], title: str, path: str) -> None:
    """Mean evaluation over seeds with the min-max range shaded, on the common evaluation steps."""
    plot_comparison({f"mean of {len(runs)} seeds": runs}, title, path)


def plot_comparison(
    curves: dict[str, list[RunResult]], title: str, path: str, returns: dict[str, list[RunResult]] | None = None
) -> None:
    """One mean-and-range curve per label (e.g. per algorithm) in one picture; with ``returns``
    (the same labels' ``eval_episode_return`` runs, for a metric that is not the return), the
    return in a first panel and the metric beside it."""
    panels = [curves] if not returns else [returns, curves]
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), dpi=100, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for label, runs in panel.items():
            if not runs:
                continue
            steps, values = _common_curve(runs)
            (line,) = ax.plot(steps, values.mean(0), label=label)
            ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2, color=line.get_color())
    ylabels = [next(r for runs in panel.values() for r in runs).metric.replace("_", " ") for panel in panels]
    save_figure(
        figure,
        list(axes[0]) if len(panels) > 1 else axes[0][0],
        f"{title} (shaded: min-max over seeds)",
        ylabels if len(panels) > 1 else ylabels[0],
        path,
    )


def by_task(groups: dict[str, list[RunResult]]) -> dict[str, dict[str, list[RunResult]]]:
    """``<env>/<task>/<exp_name>`` -> ``{algo: runs}``: the groups that compare algorithms."""
    tasks: dict[str, dict[str, list[RunResult]]] = defaultdict(dict)
    for group, runs in groups.items():
        env, task, algo, exp_name = group.split(os.sep)[-4:]
        tasks[os.path.join(env, task, exp_name)][algo] = runs
    return dict(tasks)
