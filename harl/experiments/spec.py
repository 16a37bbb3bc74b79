"""Experiment files (``experiments/paper/table*.yaml``): which algorithms run on which tasks
with which seeds and tuned configs, and the paper's numbers to compare with, as data.

A file looks like::

    name: table3                      # results go to <log_dir>/<env>/<task>/<algo>/<name>_<steps>/
    title: "Table 3: Multiple Particle Environments"
    metric: return                    # return | win_rate | score_rate (the paper's unit) | coverage | balance
    paper_scale: 1                    # paper value = ours * paper_scale (100 for percentages)
    seeds: [1, 2, 3]
    algorithms: [haa2c, mappo, hatrpo, happo, haqo]
    tasks:
      - env: pettingzoo_mpe
        task: simple_reference_v2-continuous   # the results layout's task name
        label: Reference (continuous)           # the paper's row name
        paper: {haa2c: [-36.2, 1.3], ...}        # mean, std; null where the paper has none
    diagnostics:                      # optional: training diagnostics tabled per cell
      "KL before the line search": "mean:agent*/kl_raw"   # <mean|max>:<progress.csv columns, * = any>

Each run uses ``tuned_configs/<env>/<task>/<algo>/config.json`` (``config_task`` picks another
task's file; an optional ``tuned_dir``, relative to the experiment file, another folder of such
files) with its own ``num_env_steps`` (the budget HARL published), unless the command line sets
one. A name in ``algorithms`` is the folder of that file, i.e. a column of the table: an
algorithm, or a variant of one (an ablation, e.g. ``haqo_gaussian``) whose file sets the
algorithm in ``main_args.algo``; a variant's runs go to ``<algo>/<name>-<variant>_<steps>/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harl.utils.errors import ConfigError
from harl.utils.files import load_json, load_yaml

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
TUNED_DIR = REPO_ROOT / "tuned_configs"
METRICS = {
    "return": "eval_episode_return",
    "win_rate": "eval_win_rate",
    "score_rate": "eval_score_rate",
    "coverage": "eval_coverage",
    "balance": "eval_balance",
}
DIAGNOSTIC_AGGREGATES = ("mean", "max")


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: a cell of the table and a seed."""

    env: str
    task: str
    algo: str  # the algorithm its config runs
    seed: int
    config: str  # the tuned config.json it starts from
    num_env_steps: int
    exp_name: str
    column: str = ""  # the table column: the algorithm, or the variant of it (module doc); "" = algo

    @property
    def label(self) -> str:
        return self.column or self.algo

    @property
    def key(self) -> str:
        return f"{self.label} on {self.env}/{self.task}, seed {self.seed}"

    def run_parent(self, log_dir: str) -> str:
        """``<log_dir>/<env>/<task>/<algo>/<exp_name>``: where its seed directories go."""
        return os.path.join(log_dir, self.env, self.task, self.algo, self.exp_name)


@dataclass(frozen=True)
class TaskSpec:
    """One row of the table."""

    env: str
    task: str
    label: str
    paper: dict[str, tuple[float, float] | None]
    config_task: str


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file."""

    name: str
    title: str
    metric: str  # progress.csv column
    paper_scale: float
    seeds: list[int]
    algorithms: list[str]
    tasks: list[TaskSpec]
    notes: str = ""
    path: str = ""
    tuned_dir: Path = TUNED_DIR
    # table label -> (mean | max, progress.csv column pattern): per run over every logged row
    # and matching column (e.g. every agent), then mean (std) over seeds
    diagnostics: dict[str, tuple[str, str]] = field(default_factory=dict)

    def tuned_config(self, task: TaskSpec, algo: str) -> Path:
        return self.tuned_dir / task.env / task.config_task / algo / "config.json"

    def cells(self) -> list[tuple[TaskSpec, str]]:
        """(task, algorithm) pairs that run: the paper has a number for them (or no paper column)."""
        return [(t, a) for t in self.tasks for a in self.algorithms if not (a in t.paper and t.paper[a] is None)]

    def runs(
        self,
        seeds: int | None = None,
        num_env_steps: int | None = None,
        budget_scale: float | None = None,
        only: dict[str, set[str]] | None = None,
    ) -> list[RunSpec]:
        """Every run of the sweep, in table order (seed-major so that every cell gets its first
        seed early)."""
        chosen_seeds = self.seeds if seeds is None else list(range(1, seeds + 1))
        runs = []
        for seed in chosen_seeds:
            for task, algo in self.cells():
                if only and not all(
                    value in only.get(key, {value})
                    for key, value in (("algo", algo), ("task", task.task), ("env", task.env))
                ):
                    continue
                config = self.tuned_config(task, algo)
                runs_algo, config_steps = _config_algo_and_steps(config)
                steps = num_env_steps or config_steps
                if budget_scale is not None:
                    steps = max(1, int(steps * budget_scale))
                exp_name = f"{self.name}_{steps}" if runs_algo == algo else f"{self.name}-{algo}_{steps}"
                runs.append(RunSpec(task.env, task.task, runs_algo, seed, str(config), steps, exp_name, algo))
        return runs


def _config_algo_and_steps(config: Path) -> tuple[str, int]:
    """The algorithm a tuned ``config.json`` runs and its ``num_env_steps``."""
    data = load_json(config, "tuned config")
    try:
        return str(data["main_args"]["algo"]), int(data["algo_args"]["train"]["num_env_steps"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(
            f"{config}: not a HARL config.json: it needs main_args.algo and an integer algo_args.train.num_env_steps"
        ) from None


def _paper_value(path, task, algo, value) -> tuple[float, float] | None:
    """A ``paper`` entry: ``[mean, std]`` or null."""
    if value is None:
        return None
    try:
        mean, std = value
        return float(mean), float(std)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{path}: task {task}: paper value of {algo} must be [mean, std] or null, not {value!r}"
        ) from None


def _check_shape(path, data: dict) -> None:
    """The types load_experiment relies on, each refused with the key to fix."""

    def fail(what: str) -> ConfigError:
        return ConfigError(f"{path}: {what} (see harl/experiments/spec.py for the format)")

    if not isinstance(data["seeds"], list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in data["seeds"]
    ):
        raise fail(f"seeds must be a list of integers, not {data['seeds']!r}")
    if not isinstance(data["algorithms"], list) or not all(isinstance(a, str) for a in data["algorithms"]):
        raise fail(f"algorithms must be a list of names, not {data['algorithms']!r}")
    if not isinstance(data["tasks"], list) or not data["tasks"]:
        raise fail("tasks must be a non-empty list of mappings with env and task")
    for i, entry in enumerate(data["tasks"], 1):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("env"), str)
            or not isinstance(entry.get("task"), str)
        ):
            raise fail(f"task {i} must be a mapping with env and task (strings), not {entry!r}")
        if not isinstance(entry.get("paper") or {}, dict):
            raise fail(f"task {i}: paper must map algorithms to [mean, std] or null")
    if not isinstance(data.get("diagnostics") or {}, dict):
        raise fail("diagnostics must map labels to '<mean|max>:<progress.csv column pattern>'")
    if "paper_scale" in data and (
        isinstance(data["paper_scale"], bool) or not isinstance(data["paper_scale"], (int, float))
    ):
        raise fail(f"paper_scale must be a number, not {data['paper_scale']!r}")
    if "tuned_dir" in data and not isinstance(data["tuned_dir"], str):
        raise fail(f"tuned_dir must be a folder name, not {data['tuned_dir']!r}")


def load_experiment(path: str | os.PathLike) -> Experiment:
    """Parse and check an experiment file: every cell's tuned config must exist.

    Raises:
        ConfigError: a missing or malformed file, an unknown metric, a missing tuned config.
    """
    if not os.path.exists(path):
        raise ConfigError(f"experiment file {path} not found; the paper's tables are in experiments/paper/")
    data = load_yaml(path, "experiment file")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: an experiment file is a mapping of name, title, metric, seeds, algorithms "
            f"and tasks, not a {type(data).__name__} (see harl/experiments/spec.py for the format)"
        )
    required = ("name", "title", "metric", "seeds", "algorithms", "tasks")
    missing = [key for key in required if key not in data]
    if missing:
        raise ConfigError(f"{path} lacks {', '.join(missing)} (see harl/experiments/spec.py for the format)")
    if not isinstance(data["metric"], str) or data["metric"] not in METRICS:
        raise ConfigError(f"{path}: metric must be one of {', '.join(METRICS)}, not {data['metric']!r}")
    _check_shape(path, data)
    tasks = []
    for entry in data["tasks"]:
        paper = {
            algo: _paper_value(path, entry.get("task"), algo, value)
            for algo, value in (entry.get("paper") or {}).items()
        }
        tasks.append(
            TaskSpec(
                entry["env"],
                entry["task"],
                entry.get("label", entry["task"]),
                paper,
                entry.get("config_task", entry["task"]),
            )
        )
    diagnostics = {}
    for label, text in (data.get("diagnostics") or {}).items():
        agg, _, pattern = str(text).partition(":")
        if agg not in DIAGNOSTIC_AGGREGATES or not pattern:
            raise ConfigError(
                f"{path}: diagnostic {label!r} must read '<mean|max>:<progress.csv column pattern>', not {text!r}"
            )
        diagnostics[str(label)] = (agg, pattern)
    experiment = Experiment(
        name=str(data["name"]),
        title=str(data["title"]),
        metric=METRICS[data["metric"]],
        paper_scale=float(data.get("paper_scale", 1)),
        seeds=[int(s) for s in data["seeds"]],
        algorithms=list(data["algorithms"]),
        tasks=tasks,
        notes=str(data.get("notes", "")),
        path=str(path),
        tuned_dir=(Path(path).parent / data["tuned_dir"]).resolve() if "tuned_dir" in data else TUNED_DIR,
        diagnostics=diagnostics,
    )
    absent = [
        str(experiment.tuned_config(t, a)) for t, a in experiment.cells() if not experiment.tuned_config(t, a).is_file()
    ]
    if absent:
        raise ConfigError(
            f"{path}: no tuned config for {len(absent)} cell(s): {', '.join(absent[:5])}"
            + (" ..." if len(absent) > 5 else "")
        )
    return experiment


def parse_only(text: str) -> dict[str, set[str]]:
    """``"algo=happo,haqo;task=simple_spread_v2-continuous"`` (or ``,``-joined ``key=value`` pairs)
    -> ``{"algo": {...}, "task": {...}}``."""
    selected: dict[str, set[str]] = {}
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "=" in part:
            key, value = part.split("=", 1)
            current = key.strip()
            if current not in ("algo", "task", "env"):
                raise ConfigError(f"--only takes algo=..., task=... or env=..., not {current!r}")
            selected.setdefault(current, set()).add(value.strip())
        elif selected:  # "algo=happo,haqo": a bare value continues the previous key
            selected[current].add(part)
        else:
            raise ConfigError(f"--only: {part!r} is not key=value")
    return selected
