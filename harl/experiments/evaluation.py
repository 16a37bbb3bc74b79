"""Evaluate a run's saved policy again, from its own config, with more episodes (the engine of
``examples/evaluate.py``, of ``examples/reproduce.py --eval_episodes`` and of the
visitation-density plots)."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from harl.utils.cli import parse_train_args
from harl.utils.configs_tools import ConfigError


@contextmanager
def rebuilt_runner(run_dir: str, eval_episodes: int, eval_seed: int, weights_dir: str = "",
                   overrides: tuple[str, ...] = (), explore: bool = False) -> Iterator[Any]:
    """The runner of ``run_dir`` rebuilt from its config with saved weights: ``weights_dir``
    (HARL's ``model_dir``, e.g. a snapshot), else the final weights in ``models/``, else
    ``models/checkpoint.pt`` for a run stopped before its end; ``overrides`` are further
    ``--key value`` arguments; ``explore``: its evaluation acts as in training (sampled
    actions) instead of deterministically. Nothing is written."""
    config = os.path.join(run_dir, "config.json")
    models = os.path.join(run_dir, "models")
    if not (os.path.isfile(config) and os.path.isdir(models)):
        raise ConfigError(f"{run_dir} has no config.json and models/; pass the directory of a run (seed-...)")
    if weights_dir and not os.path.isfile(os.path.join(weights_dir, "actor_agent0.pt")):
        raise ConfigError(f"{weights_dir} holds no weights (actor_agent0.pt ...)")
    weights = weights_dir or models
    # A run stopped before its end (killed, SIGTERM, NaN) has no final weights, only its checkpoint.
    from_checkpoint = not os.path.isfile(os.path.join(weights, "actor_agent0.pt"))
    checkpoint = os.path.join(models, "checkpoint.pt")
    if from_checkpoint and not os.path.isfile(checkpoint):
        raise ConfigError(
            f"{run_dir} has no weights to evaluate: models/ holds neither the final weights "
            "(actor_agent0.pt ..., written when a run ends) nor checkpoint.pt (written every "
            "checkpoint_interval); the run stopped before its first checkpoint."
        )
    parsed = parse_train_args([
        "--load_config", config, "--use_eval", "True",
        "--eval_episodes", str(eval_episodes), "--seed", str(eval_seed), "--seed_specify", "True",
        # nothing is written under --log_dir: a runner creates its directory only in run()
        "--log_dir", tempfile.gettempdir(), *([] if from_checkpoint else ["--model_dir", weights]), *overrides,
    ])
    args, algo_args, env_args = parsed
    from harl.runners import RUNNER_REGISTRY
    from harl.utils.checkpoint import load_checkpoint

    runner = RUNNER_REGISTRY[args["algo"]](args, algo_args, env_args)
    runner.eval_explore = explore
    try:
        if from_checkpoint:
            state = load_checkpoint(checkpoint, runner.device)
            runner.load_algorithm_state(state["algorithm"])
            print(f"note: {run_dir} has no final weights (it stopped at env step {int(state['total_steps']):,}); "
                  "evaluating models/checkpoint.pt", file=sys.stderr)
        yield runner
    finally:
        runner.close()


def evaluate_run(run_dir: str, eval_episodes: int, eval_seed: int, weights_dir: str = "",
                 before_step: Callable[[Any], None] | None = None, overrides: tuple[str, ...] = (),
                 explore: bool = False) -> dict:
    """Rebuild the run of ``run_dir`` (:func:`rebuilt_runner`) and return ``evaluate()``'s result
    with the run's algorithm, task and training seed; ``before_step(runner)`` is called before
    every vectorised evaluation step."""
    with rebuilt_runner(run_dir, eval_episodes, eval_seed, weights_dir, overrides, explore) as runner:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as file:
            train_seed = json.load(file)["algo_args"]["seed"]["seed"]
        hook = None if before_step is None else (lambda: before_step(runner))
        result = runner.evaluate(hook)
        return {"algo": runner.args["algo"], "env": runner.args["env"], "task": runner.task_name,
                "train_seed": train_seed, **result}
