"""The paper-format report of a sweep: mean (std) over seeds beside the paper's number, the
interquartile mean with a bootstrap 95% confidence interval, the probability that HAQO beats each
baseline, sample efficiency, and seed-band learning curves; as Markdown, CSV and LaTeX."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field

import numpy as np

from harl.experiments.evaluation import evaluate_run
from harl.experiments.spec import Experiment, RunSpec, TaskSpec
from harl.experiments.sweep import run_state
from harl.utils.checkpoint import atomic_write
from harl.utils.errors import ConfigError
from harl.utils.files import load_json
from harl.utils.results_tools import RunResult, diagnostics, plot_comparison, read_run
from harl.utils.stats import bootstrap_ci, iqm, probability_of_improvement_ci

CANDIDATE = "haqo"  # the algorithm the probability-of-improvement rows are about
REFERENCE = "happo"  # whose final evaluation sets the sample-efficiency target
MIN_SEEDS_FOR_SPREAD = 2  # below it there is no std, interval or comparison to show, only the value
RETURN = "eval_episode_return"  # the progress.csv column of the evaluation return


@dataclass
class Cell:
    """The finished runs of one (task, algorithm) pair, on the paper's scale."""

    task: TaskSpec
    algo: str
    runs: list[RunResult]
    scale: float
    planned: int = 0  # runs the sweep asked for (seeds); fewer finished ones are marked in the table
    reevaluated: list[float] = field(default_factory=list)  # per run, when re-evaluated
    diagnostics: dict[str, list[float]] = field(default_factory=dict)  # label -> per run (experiment.diagnostics)
    # per run, its evaluation returns, when the experiment's metric is another (win rate, ...):
    # the curves draw them beside the metric
    return_runs: list[RunResult] = field(default_factory=list)

    @property
    def finals(self) -> np.ndarray:
        """Per seed: the re-evaluation when there is one, else the run's last evaluation."""
        values = self.reevaluated if self.reevaluated else [r.final_eval for r in self.runs]
        return np.array(values) * self.scale

    @property
    def has_spread(self) -> bool:
        """Enough finished seeds for a std, an interval and a comparison."""
        return len(self.runs) >= MIN_SEEDS_FOR_SPREAD


def gather(
    experiment: Experiment,
    runs: list[RunSpec],
    log_dir: str,
    eval_episodes: int = 0,
    eval_seed: int = 12345,
    cache_path: str = "",
    explore: bool = False,
) -> dict[tuple[str, str], Cell]:
    """``(task name, algo) -> Cell`` with every finished run of the sweep; with
    ``eval_episodes``, each run's saved policy is evaluated again for that many episodes (from
    ``eval_seed``, the same start states for every run; ``explore``: acting as in training,
    sampled actions, instead of deterministically), cached in ``cache_path`` under the run's path
    relative to ``log_dir``."""
    cells = {(t.task, a): Cell(t, a, [], experiment.paper_scale) for t, a in experiment.cells()}
    cache: dict[str, float] = {}
    if eval_episodes and cache_path and os.path.isfile(cache_path):
        try:
            cache = load_json(cache_path, "re-evaluation cache")
        except ConfigError as err:
            raise ConfigError(f"{err}; delete it to evaluate the runs again") from None
        if not isinstance(cache, dict) or not all(isinstance(v, (int, float)) for v in cache.values()):
            raise ConfigError(
                f"{cache_path}: the re-evaluation cache must map runs to numbers; delete it to evaluate the runs again"
            )
    for spec in runs:
        if (spec.task, spec.label) not in cells:
            continue
        cells[(spec.task, spec.label)].planned += 1
        state, run_dir = run_state(spec, log_dir)
        if state != "finished":
            continue
        result = read_run(run_dir, experiment.metric)
        if result is None:
            continue
        cell = cells[(spec.task, spec.label)]
        cell.runs.append(result)
        if experiment.metric != RETURN:
            returns = read_run(run_dir, RETURN)
            if returns is not None:
                cell.return_runs.append(returns)
        if experiment.diagnostics:
            for label, value in diagnostics(run_dir, experiment.diagnostics).items():
                cell.diagnostics.setdefault(label, []).append(value)
        if eval_episodes:
            # relative to log_dir: a results folder copied to another machine keeps its re-evaluations
            key = f"{os.path.relpath(run_dir, log_dir)}|{eval_episodes}|{eval_seed}" + ("|sampled" if explore else "")
            if key not in cache:
                cache[key] = float(evaluate_run(run_dir, eval_episodes, eval_seed, explore=explore)[experiment.metric])
                if cache_path:  # after every run: an interrupted report keeps what it computed
                    os.makedirs(os.path.dirname(cache_path), exist_ok=True)
                    atomic_write(cache_path, lambda file: file.write(json.dumps(cache, indent=1).encode()))
            cell.reevaluated.append(cache[key])
    return cells


def decimals_for(values: np.ndarray) -> int:
    """Decimals that show a table's numbers to about three significant digits: 1 for returns in
    the tens, 3 for shares such as coverage (at most 3)."""
    largest = float(np.abs(values).max()) if len(values) else 0.0
    return 1 if largest == 0.0 else int(np.clip(2 - np.floor(np.log10(largest)), 1, 3))


def _mean_std(values: np.ndarray, digits: int = 1) -> str:
    if not len(values):
        return "-"
    if len(values) < MIN_SEEDS_FOR_SPREAD:
        return f"{values.mean():.{digits}f} (one seed)"
    return f"{values.mean():.{digits}f} ({values.std():.{digits}f})"


def _seeds_note(cell: Cell) -> str:
    """ ", 1 of 3 seeds" for a cell the sweep has not finished yet, else nothing."""
    return f", {len(cell.runs)} of {cell.planned} seeds" if len(cell.runs) < cell.planned else ""


def _mean_std_precise(values: np.ndarray) -> str:
    """Three significant digits: diagnostics span orders of magnitude (KLs, seconds)."""
    return f"{values.mean():.3g} ({values.std():.2g})" if len(values) else "-"


def steps_to_reach(runs: list[RunResult], target: float, scale: float) -> float | None:
    """First evaluation step at which the seed-mean curve reaches ``target`` (None if never)."""
    common = sorted(set.intersection(*(set(r.curve[0].tolist()) for r in runs)))
    if not common:
        return None
    mean = np.array([[dict(zip(*r.curve))[s] for s in common] for r in runs]).mean(0) * scale
    reached = np.nonzero(mean >= target)[0]
    return float(common[reached[0]]) if len(reached) else None


def build_report(
    experiment: Experiment, cells: dict[tuple[str, str], Cell], out_dir: str, budget_note: str, n_boot: int = 2000
) -> str:
    """Write ``table.md``, ``table.csv``, ``table.tex`` and ``curves/*.png`` to ``out_dir``;
    returns the Markdown."""
    os.makedirs(os.path.join(out_dir, "curves"), exist_ok=True)
    algos = experiment.algorithms
    unit = experiment.metric.removeprefix("eval_").replace("_", " ")
    digits = decimals_for(np.concatenate([np.zeros(0), *(cell.finals for cell in cells.values())]))
    md = [
        f"# {experiment.title}: ours vs the paper",
        "",
        f"Final {unit} (x {experiment.paper_scale:g}) at the end of training, mean (std) over seeds; "
        f"the paper's number below it. {budget_note}",
        "",
    ]
    md += ["| task | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    summaries: dict[tuple[str, str], dict] = {}  # (task, algo) -> its CSV row
    tex = ["\\begin{tabular}{l" + "c" * len(algos) + "}", "Task & " + " & ".join(algos) + " \\\\", "\\hline"]
    for task in experiment.tasks:
        means = {
            a: cells[(task.task, a)].finals.mean()
            for a in algos
            if (task.task, a) in cells and len(cells[(task.task, a)].runs)
        }
        best = max(means, key=means.get) if means else None
        row, tex_row = [], []
        for algo in algos:
            cell = cells.get((task.task, algo))
            ours = _mean_std(cell.finals, digits) + _seeds_note(cell) if cell and len(cell.runs) else "-"
            paper = task.paper.get(algo)
            paper_text = f"{paper[0]:g} ({paper[1]:g})" if paper else "-"
            ours_md = f"**{ours}**" if algo == best else ours
            row.append(f"{ours_md}<br>paper {paper_text}")
            tex_row.append(("\\textbf{" + ours + "}" if algo == best else ours) + f" [{paper_text}]")
            if cell:
                finals = cell.finals
                point, low, high = bootstrap_ci(finals, iqm, n_boot=n_boot) if cell.has_spread else ("",) * 3
                summaries[(task.task, algo)] = {
                    "task": task.task,
                    "algo": algo,
                    "seeds": len(finals),
                    "mean": finals.mean() if len(finals) else "",
                    "std": finals.std() if cell.has_spread else "",
                    "iqm": point,
                    "iqm_ci_low": low,
                    "iqm_ci_high": high,
                    "paper_mean": paper[0] if paper else "",
                    "paper_std": paper[1] if paper else "",
                    "per_seed": " ".join(f"{v:.3f}" for v in finals),
                    "planned_seeds": cell.planned,
                }
        md.append(f"| {task.label} | " + " | ".join(row) + " |")
        tex.append(task.label.replace("_", "\\_") + " & " + " & ".join(tex_row).replace("_", "\\_") + " \\\\")
    tex.append("\\end{tabular}")

    md += [
        "",
        f"Interquartile mean over seeds with a percentile-bootstrap 95% interval ({n_boot} resamples of the seeds; "
        f"- where a cell has fewer than {MIN_SEEDS_FOR_SPREAD} finished seeds):",
        "",
        "| task | " + " | ".join(algos) + " |",
        "|---|" + "---|" * len(algos),
    ]
    for task in experiment.tasks:
        cells_row = []
        for algo in algos:
            found = summaries.get((task.task, algo))
            cells_row.append(
                f"{found['iqm']:.{digits}f} [{found['iqm_ci_low']:.{digits}f}, {found['iqm_ci_high']:.{digits}f}]"
                if found and found["iqm"] != ""
                else "-"
            )
        md.append(f"| {task.label} | " + " | ".join(cells_row) + " |")

    baselines = [a for a in algos if a != CANDIDATE]
    if CANDIDATE in algos and baselines:
        md += [
            "",
            f"P({CANDIDATE.upper()} > baseline): the probability that a random seed of {CANDIDATE.upper()} ends above "
            "a random seed of the baseline, with a bootstrap 95% interval; and whether the IQM intervals "
            "are apart:",
            "",
            "| task | " + " | ".join(baselines) + " |",
            "|---|" + "---|" * len(baselines),
        ]
        verdicts = {b: {"above": 0, "overlaps": 0, "below": 0} for b in baselines}
        for task in experiment.tasks:
            candidate = cells.get((task.task, CANDIDATE))
            entries = []
            for base in baselines:
                other = cells.get((task.task, base))
                if not candidate or not other or not (candidate.has_spread and other.has_spread):
                    entries.append("-")
                    continue
                p, low, high = probability_of_improvement_ci(candidate.finals, other.finals, n_boot=n_boot)
                mine, theirs = summaries[(task.task, CANDIDATE)], summaries[(task.task, base)]
                if mine["iqm_ci_low"] > theirs["iqm_ci_high"]:
                    verdict = "above"
                elif mine["iqm_ci_high"] < theirs["iqm_ci_low"]:
                    verdict = "below"
                else:
                    verdict = "overlaps"
                verdicts[base][verdict] += 1
                entries.append(f"{p:.2f} [{low:.2f}, {high:.2f}], {verdict}")
            md.append(f"| {task.label} | " + " | ".join(entries) + " |")
        md += [
            "",
            "IQM interval of "
            + CANDIDATE.upper()
            + " vs each baseline's, over tasks: "
            + "; ".join(
                f"{b}: {v['above']} above, {v['overlaps']} overlapping, {v['below']} below" for b, v in verdicts.items()
            ),
        ]

    if REFERENCE in algos:
        md += [
            "",
            f"Sample efficiency: env steps at which the seed-mean training-time evaluation curve first "
            f"reaches {REFERENCE.upper()}'s final training-time evaluation mean (- = never within the budget):",
            "",
            "| task | target | " + " | ".join(algos) + " |",
            "|---|---|" + "---|" * len(algos),
        ]
        for task in experiment.tasks:
            reference = cells.get((task.task, REFERENCE))
            if not reference or not reference.runs:
                continue
            # the curves are training-time evaluations: so is the target (not a re-evaluation)
            target = float(np.mean([r.final_eval for r in reference.runs])) * reference.scale
            entries = []
            for algo in algos:
                cell = cells.get((task.task, algo))
                steps = steps_to_reach(cell.runs, target, cell.scale) if cell and cell.runs else None
                entries.append(f"{steps:,.0f}" if steps is not None else "-")
            md.append(f"| {task.label} | {target:.{digits}f} | " + " | ".join(entries) + " |")

    if experiment.diagnostics:
        labels = list(experiment.diagnostics)
        md += [
            "",
            "Training diagnostics, per run over the whole run ("
            + "; ".join(f"{label}: {agg} of {pattern}" for label, (agg, pattern) in experiment.diagnostics.items())
            + "), mean (std) over seeds"
            + (
                "; times are seconds on this machine, comparable only between runs of one sweep"
                if any(p.startswith("time/") for _, p in experiment.diagnostics.values())
                else ""
            )
            + ":",
        ]
        for task in experiment.tasks:
            md += [
                "",
                f"{task.label}:",
                "",
                f"| column | final {unit} | " + " | ".join(labels) + " |",
                "|---|---|" + "---|" * len(labels),
            ]
            for algo in algos:
                cell = cells.get((task.task, algo))
                if not cell or not cell.runs:
                    continue
                values = [_mean_std_precise(np.array(cell.diagnostics.get(label, []))) for label in labels]
                md.append(f"| {algo} | {_mean_std(cell.finals, digits)} | " + " | ".join(values) + " |")

    for task in experiment.tasks:
        curves = {
            a: cells[(task.task, a)].runs for a in algos if cells.get((task.task, a)) and cells[(task.task, a)].runs
        }
        if curves:
            path = os.path.join(out_dir, "curves", f"{task.env}__{task.task}.png")
            # a metric other than the return (win rate, coverage) is drawn beside the return
            returns = {a: cells[(task.task, a)].return_runs for a in curves}
            plot_comparison(curves, f"{task.label} ({task.env})", path, returns if any(returns.values()) else None)
    if experiment.notes:
        md += ["", experiment.notes.strip()]
    text = "\n".join(md) + "\n"
    with open(os.path.join(out_dir, "table.md"), "w", encoding="utf-8") as file:
        file.write(text)
    with open(os.path.join(out_dir, "table.tex"), "w", encoding="utf-8") as file:
        file.write("\n".join(tex) + "\n")
    buffer = io.StringIO()
    if summaries:
        rows = list(summaries.values())
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(out_dir, "table.csv"), "w", encoding="utf-8", newline="") as file:
        file.write(buffer.getvalue())
    return text
