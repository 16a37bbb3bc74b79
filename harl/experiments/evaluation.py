"""Evaluate a run's saved policy again, from its own config, with more episodes (the engine of
``examples/evaluate.py`` and of ``examples/reproduce.py --eval_episodes``)."""
from __future__ import annotations

import json
import os
import sys
import tempfile

from harl.utils.cli import parse_train_args
from harl.utils.configs_tools import ConfigError


def evaluate_run(run_dir: str, eval_episodes: int, eval_seed: int) -> dict:
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
        # nothing is written under --log_dir: a runner creates its directory only in run()
        "--log_dir", tempfile.gettempdir(), *([] if from_checkpoint else ["--model_dir", models]),
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
