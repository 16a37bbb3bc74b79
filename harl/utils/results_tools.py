"""Aggregate finished runs: the final evaluation of every seed, the mean and spread over seeds,
and a mean-and-range learning-curve picture.

The headline number is the evaluation return, except for the StarCraft family (``smac``,
``smacv2``, ``smax``), which the paper reports in win rate (``eval_win_rate``), and Football, in
score rate (``eval_score_rate``)."""
from __future__ import annotations

import csv
import fnmatch
import glob
import os
from collections import defaultdict
from typing import NamedTuple

import numpy as np

from harl.utils.plotting import plt, save_figure


# Environments the paper reports in a rate, with its progress.csv column; the others in return.
RATE_METRICS = {"smac": "eval_win_rate", "smacv2": "eval_win_rate", "smax": "eval_win_rate",
                "football": "eval_score_rate"}


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
    with open(os.path.join(run_dir, "progress.csv"), newline="", encoding="utf-8") as file:
        rows = [r for r in csv.DictReader(file) if r.get(metric)]
    if not rows:
        return None
    steps = np.array([float(r["env_steps"]) for r in rows])
    values = np.array([float(r[metric]) for r in rows])
    return RunResult(group, os.path.basename(run_dir), int(steps[-1]), metric, float(values[-1]),
                     float(rows[-1]["wall_time"]), (steps, values))


def diagnostics(run_dir: str, wanted: dict[str, tuple[str, str]]) -> dict[str, float]:
    """``label -> value`` for each ``label: (mean | max, pattern)``: the mean or max of every
    logged value of the ``progress.csv`` columns matching ``pattern`` (``*`` = any text, e.g.
    ``agent*/kl``) over the whole run; labels with no logged value are left out."""
    with open(os.path.join(run_dir, "progress.csv"), newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    out = {}
    for label, (aggregate, pattern) in wanted.items():
        columns = fnmatch.filter(rows[0].keys(), pattern) if rows else []
        values = [float(r[c]) for r in rows for c in columns if r.get(c)]
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
    lines = ["| run group | final evaluation | seeds | env steps | per seed | mean | std | min | max |",
             "|---|---|---|---|---|---|---|---|---|"]
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


def plot_comparison(curves: dict[str, list[RunResult]], title: str, path: str) -> None:
    """One mean-and-range curve per label (e.g. per algorithm) in one picture."""
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    for label, runs in curves.items():
        steps, values = _common_curve(runs)
        (line,) = axes.plot(steps, values.mean(0), label=label)
        axes.fill_between(steps, values.min(0), values.max(0), alpha=0.2, color=line.get_color())
    metric = next(iter(curves.values()))[0].metric
    save_figure(figure, axes, f"{title} (shaded: min-max over seeds)", metric.replace("_", " "), path)


def by_task(groups: dict[str, list[RunResult]]) -> dict[str, dict[str, list[RunResult]]]:
    """``<env>/<task>/<exp_name>`` -> ``{algo: runs}``: the groups that compare algorithms."""
    tasks: dict[str, dict[str, list[RunResult]]] = defaultdict(dict)
    for group, runs in groups.items():
        env, task, algo, exp_name = group.split(os.sep)[-4:]
        tasks[os.path.join(env, task, exp_name)][algo] = runs
    return dict(tasks)
