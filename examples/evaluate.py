"""Evaluate the final policies of runs again, with more episodes.

    python examples/evaluate.py RUN_DIR [RUN_DIR ...] [--eval_episodes 200] [--eval_seed 12345] [--stochastic]

Each run is rebuilt from its ``config.json`` with its saved weights (``models/``, HARL's
``model_dir``; a run stopped before its end is evaluated from ``models/checkpoint.pt``) and
evaluated for ``--eval_episodes`` decentralised episodes, exactly as the run's own evaluations
do: deterministic actions (each agent's most likely action, HARL's evaluation). ``--stochastic``
evaluates the behaviour policy instead, acting as in training: sampled actions (on-policy
algorithms, HASAC, HAQO), exploration noise (HADDPG, HATD3, MADDPG, MATD3), epsilon-greedy at
the end of its schedule (QMIX, VDN). Every run is evaluated from the same ``--eval_seed``, so
different algorithms meet the same initial states (a paired comparison). Prints one Markdown row
per run; nothing is written into the run directories.
"""

import argparse
import logging
import sys

if __name__ == "__main__":  # first, before torch and JAX load: Ctrl+C ends with one line and exit 130
    from harl.utils.interrupt import install

    install("interrupted (Ctrl+C) before every run was evaluated; nothing was written")

from harl.cli import handle_cli_errors  # noqa: E402
from harl.experiments.evaluation import check_run, evaluate_run  # noqa: E402


def main() -> None:
    """Evaluate every run given on the command line and print the table."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run directories (results/<env>/<task>/<algo>/<exp>/seed-...)")
    parser.add_argument("--eval_episodes", type=int, default=200, help="episodes per run")
    parser.add_argument("--eval_seed", type=int, default=12345, help="seed of the evaluation environments and policies")
    parser.add_argument(
        "--stochastic",
        action="store_true",
        help="act as in training (sampled actions, exploration) instead of deterministically",
    )
    cli = parser.parse_args()
    for run_dir in cli.run_dirs:  # every argument is checked before anything is printed
        check_run(run_dir, cli.eval_episodes, cli.eval_seed)
    from harl.utils.results_tools import RATE_METRICS  # loads torch and matplotlib: after the checks

    actions = "sampled" if cli.stochastic else "deterministic"
    for i, run_dir in enumerate(cli.run_dirs):
        r = evaluate_run(run_dir, cli.eval_episodes, cli.eval_seed, explore=cli.stochastic)
        if i == 0:  # with the first row: a run that cannot be loaded (a damaged checkpoint) prints no table
            print("| algo | task | train seed | actions | episodes | eval return | eval win / score rate | run |")
            print("|---|---|---|---|---|---|---|---|")
        rate = RATE_METRICS.get(r["env"])  # StarCraft family: battles won; Football: goals
        print(
            f"| {r['algo']} | {r['task']} | {r['train_seed']} | {actions} | {cli.eval_episodes} | "
            f"{r['eval_episode_return']:.2f} | {'' if rate is None else f'{r[rate]:.3f}'} | {run_dir} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(handle_cli_errors(main))
