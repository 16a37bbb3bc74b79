"""Reproduce a table of the paper: run every (task, algorithm, seed) of an experiment file, then
write the paper-format report.

    python examples/reproduce.py experiments/paper/table3.yaml --seeds 3 --num_env_steps 300000

Each run is an ``examples/train.py`` process from its tuned config. Re-running the command
skips finished runs and resumes stopped ones, so a killed sweep is finished by running it again.
``--ray auto`` runs each as a Ray task (on the cluster this machine belongs to, or a local one);
``--eval_episodes N`` re-evaluates every finished policy for the table (deterministic actions, as
HARL evaluates; with ``--stochastic``, acting as in training, into ``reports/<name>-sampled``);
``--report`` only writes the report from the runs there are.
"""

import argparse
import logging
import os
import signal
import sys

if __name__ == "__main__":  # first, before torch and JAX load: Ctrl+C ends with one line and exit 130
    from harl.utils.interrupt import install

    install("interrupted (Ctrl+C) before the sweep started; nothing was written")

from harl.cli import handle_cli_errors  # noqa: E402
from harl.utils.configs_tools import check_writable
from harl.utils.errors import ConfigError  # noqa: E402
from harl.utils.interrupt import hand_over, take_back  # noqa: E402


def main() -> None:
    """Parse the command line, run the sweep, write the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="an experiment file, e.g. experiments/paper/table3.yaml")
    parser.add_argument("--seeds", type=int, help="seeds 1..N instead of the file's seeds")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--num_env_steps", type=int, help="every run's budget (default: each tuned config's own)")
    budget.add_argument("--budget_scale", type=float, help="each tuned config's budget times this factor")
    parser.add_argument("--workers", type=int, help="runs at a time (default: CPU cores / torch threads)")
    parser.add_argument("--torch_threads", type=int, default=1, help="torch threads (and Ray CPUs) per run")
    parser.add_argument("--ray", metavar="auto|ADDRESS", help="run each run as a Ray task")
    parser.add_argument("--gpu", action="store_true", help="with --ray: each run asks for one GPU")
    parser.add_argument("--only", default="", help="a subset, e.g. 'algo=happo,haqo;task=simple_spread_v2-continuous'")
    parser.add_argument("--log_dir", default="results", help="root of the run directories (shared with --ray)")
    parser.add_argument("--out", help="report folder (default: <log_dir>/reports/<name>)")
    parser.add_argument(
        "--eval_episodes",
        type=int,
        default=0,
        help="re-evaluate every finished run's policy for this many episodes (default: the runs' own last evaluation)",
    )
    parser.add_argument(
        "--eval_seed", type=int, default=12345, help="seed of the re-evaluations (the same for every run)"
    )
    parser.add_argument(
        "--stochastic",
        action="store_true",
        help="with --eval_episodes: re-evaluate acting as in training (sampled actions); report "
        "in <log_dir>/reports/<name>-sampled by default",
    )
    parser.add_argument("--report", action="store_true", help="write the report only, run nothing")
    parser.add_argument("--dry_run", action="store_true", help="list the runs and what would happen to each")
    cli = parser.parse_args()
    if cli.eval_episodes < 0:
        raise ConfigError(f"--eval_episodes must be >= 0, got {cli.eval_episodes}")
    if cli.stochastic and not cli.eval_episodes:
        raise ConfigError(
            "--stochastic re-evaluates the final policies: give --eval_episodes N as well "
            "(the runs' own evaluations are deterministic)"
        )
    for name in ("seeds", "num_env_steps", "workers", "torch_threads"):
        value = getattr(cli, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be >= 1, got {value}")
    if cli.budget_scale is not None and cli.budget_scale <= 0:
        raise ConfigError(f"--budget_scale must be > 0, got {cli.budget_scale}")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from harl.experiments.spec import load_experiment  # no torch: a bad file is refused at once

    experiment = load_experiment(cli.experiment)
    from harl.experiments.report import build_report, gather
    from harl.experiments.spec import parse_only
    from harl.experiments.sweep import check_runs, run_state, run_sweep, stopped_by_signal

    runs = experiment.runs(cli.seeds, cli.num_env_steps, cli.budget_scale, parse_only(cli.only) if cli.only else None)
    if not runs:
        raise ConfigError(
            f"--only {cli.only!r} selects no run of {cli.experiment}"
            if cli.only
            else f"{cli.experiment} has no cell to run (every task's paper value is null)"
        )
    log_dir = os.path.abspath(cli.log_dir)
    if not cli.dry_run:  # where the runs and the report go, checked before any run starts
        if not cli.report:
            check_writable(cli.log_dir)
        check_writable(cli.out or cli.log_dir, "--out" if cli.out else "--log_dir", "the report")
    if not cli.report:
        check_runs(runs, log_dir, cli.torch_threads)
    if cli.dry_run:
        for spec in runs:
            state, run_dir = run_state(spec, log_dir)
            print(f"{state:9s} {spec.key}, {spec.num_env_steps:,} env steps ({run_dir or spec.config})")
        return
    if not cli.report:
        from harl.utils.envs_tools import available_cpu_count  # loads torch

        workers = cli.workers or max(1, available_cpu_count() // cli.torch_threads)
        hand_over()  # the sweep's own SIGINT handler stops the runs after their checkpoints
        results = run_sweep(experiment.name, runs, log_dir, workers, cli.torch_threads, cli.ray, cli.gpu)
        signum = stopped_by_signal()
        if signum:  # no report from a sweep stopped half-way; the runs keep their checkpoints
            print(f"stopped by {signal.Signals(signum).name}; run the same command to resume", file=sys.stderr)
            raise SystemExit(128 + signum)
        failed = [(spec, r) for spec, r in zip(runs, results) if r["status"] == "failed"]
        for spec, result in failed:
            print(f"failed: {spec.key} (exit {result.get('returncode')}); log: {result['log']}", file=sys.stderr)
    steps = sorted({spec.num_env_steps for spec in runs})
    budget_note = (
        f"Budget: {steps[0]:,} env steps per run."
        if len(steps) == 1
        else f"Budgets: {steps[0]:,} to {steps[-1]:,} env steps (each tuned config's own)."
    )
    out_dir = cli.out or os.path.join(log_dir, "reports", experiment.name + ("-sampled" if cli.stochastic else ""))
    take_back(
        f"interrupted (Ctrl+C) before the report was complete; the runs are kept: run the same command "
        f"to write {out_dir}"
    )
    if cli.eval_episodes:
        actions = "actions sampled as in training" if cli.stochastic else "deterministic actions"
        budget_note += (
            f" Final evaluation: each run's saved policy re-evaluated for {cli.eval_episodes} episodes, "
            f"{actions} (examples/evaluate.py{' --stochastic' if cli.stochastic else ''}, seed {cli.eval_seed})."
        )
    else:
        budget_note += " Final evaluation: each run's last training-time evaluation."
    cells = gather(
        experiment,
        runs,
        log_dir,
        cli.eval_episodes,
        cli.eval_seed,
        os.path.join(out_dir, "reevaluations.json"),
        cli.stochastic,
    )
    print(build_report(experiment, cells, out_dir, budget_note))
    print(f"wrote {out_dir}/table.md, table.csv, table.tex and curves/", file=sys.stderr)
    if not cli.report and failed:
        raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(handle_cli_errors(main))
