"""Evaluate the final policies of runs again, with more episodes.

    python examples/evaluate.py RUN_DIR [RUN_DIR ...] [--eval_episodes 200] [--eval_seed 12345]

Each run is rebuilt from its ``config.json`` with its saved weights (``models/``, HARL's
``model_dir``; a run stopped before its end is evaluated from ``models/checkpoint.pt``) and evaluated for ``--eval_episodes`` decentralised episodes, exactly as the run's
own evaluations do. Every run is evaluated from the same ``--eval_seed``, so different algorithms
meet the same initial states (a paired comparison). Prints one Markdown row per run; nothing is
written into the run directories.
"""
import argparse
import json
import logging
import os
import sys
import tempfile

from harl.utils.cli import handle_cli_errors, parse_train_args
from harl.utils.configs_tools import ConfigError


def evaluate_run(run_dir: str, eval_episodes: int, eval_seed: int, scratch_dir: str) -> dict:
    """Rebuild the run of ``run_dir`` with its saved weights and return ``evaluate()``'s result
    with the run's algorithm, task and training seed."""
    config = os.path.join(run_dir, "config.json")
    models = os.path.join(run_dir, "models")
    if not (os.path.isfile(config) and os.path.isdir(models)):
        raise ConfigError(f"{run_dir} has no config.json and models/; pass the directory of a run (seed-...)")
    # A run stopped before its end (killed, SIGTERM, NaN) has no final weights, only its checkpoint.
    from_checkpoint = not os.path.isfile(os.path.join(models, "actor_agent0.pt"))
    checkpoint = os.path.join(models, "checkpoint.pt")
    if from_checkpoint and not os.path.isfile(checkpoint):
        raise ConfigError(
            f"{run_dir} has no weights to evaluate: models/ holds neither the final weights "
            "(actor_agent0.pt ..., written when a run ends) nor checkpoint.pt (written every "
            "checkpoint_interval); the run stopped before its first checkpoint."
        )
    with open(config, encoding="utf-8") as file:
        train_seed = json.load(file)["algo_args"]["seed"]["seed"]
    parsed = parse_train_args([
        "--load_config", config, "--use_eval", "True",
        "--eval_episodes", str(eval_episodes), "--seed", str(eval_seed), "--seed_specify", "True",
        "--log_dir", scratch_dir, *([] if from_checkpoint else ["--model_dir", models]),
    ])
    args, algo_args, env_args = parsed
    from harl.runners import RUNNER_REGISTRY
    from harl.utils.checkpoint import load_checkpoint

    runner = RUNNER_REGISTRY[args["algo"]](args, algo_args, env_args)
    try:
        if from_checkpoint:
            state = load_checkpoint(checkpoint, runner.device)
            runner.load_algorithm_state(state["algorithm"])
            print(f"note: {run_dir} has no final weights (it stopped at env step {int(state['total_steps']):,}); "
                  "evaluating models/checkpoint.pt", file=sys.stderr)
        result = runner.evaluate()
        return {"algo": args["algo"], "task": runner.task_name, "train_seed": train_seed, **result}
    finally:
        runner.close()


def main() -> None:
    """Evaluate every run given on the command line and print the table."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run directories (results/<env>/<task>/<algo>/<exp>/seed-...)")
    parser.add_argument("--eval_episodes", type=int, default=200, help="episodes per run")
    parser.add_argument("--eval_seed", type=int, default=12345, help="seed of the evaluation environments and policies")
    cli = parser.parse_args()
    print("| algo | task | train seed | episodes | eval return | eval win rate | run |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch_dir:
        for run_dir in cli.run_dirs:
            r = evaluate_run(run_dir, cli.eval_episodes, cli.eval_seed, scratch_dir)
            win_rate = f"{r['eval_win_rate']:.3f}" if "eval_win_rate" in r else ""  # StarCraft family
            print(f"| {r['algo']} | {r['task']} | {r['train_seed']} | {cli.eval_episodes} | "
                  f"{r['eval_episode_return']:.2f} | {win_rate} | {run_dir} |", flush=True)


if __name__ == "__main__":
    sys.exit(handle_cli_errors(main))
