"""Evaluate a run's saved policy again, from its own config, with more episodes (the engine of
``examples/evaluate.py``, of ``examples/reproduce.py --eval_episodes`` and of the
visitation-density plots)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from harl.cli import parse_train_args
from harl.envs import check_run_env_args
from harl.utils.configs_tools import load_config_json
from harl.utils.errors import ConfigError


def _evaluation_config(
    run_dir: str,
    eval_episodes: int,
    eval_seed: int,
    weights_dir: str = "",
    overrides: tuple[str, ...] = (),
    load_weights: bool = True,
) -> tuple[tuple[dict, dict, dict], bool, str]:
    """``((args, algo_args, env_args), from_checkpoint, checkpoint path)`` of the evaluation of
    ``run_dir`` (see :func:`rebuilt_runner`), or ConfigError saying what is missing."""
    config = os.path.join(run_dir, "config.json")
    models = os.path.join(run_dir, "models")
    if not os.path.exists(run_dir):
        raise ConfigError(
            f"{run_dir} does not exist; pass the directory of a run (results/<env>/<task>/<algo>/<exp_name>/seed-...)"
        )
    if not os.path.isdir(run_dir):
        raise ConfigError(f"{run_dir} is a file, not a run directory; pass the directory of a run (seed-...)")
    missing = [
        name
        for name, there in (("config.json", os.path.exists(config)), ("models/", os.path.isdir(models)))
        if not there
    ]
    if missing:  # a config.json that is no file is reported by its reader
        raise ConfigError(f"{run_dir} has no {' and no '.join(missing)}; pass the directory of a run (seed-...)")
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
    if not from_checkpoint:  # a damaged weight file is refused by name, not from inside torch
        from harl.utils.checkpoint import check_weights

        check_weights(weights)
    parsed = parse_train_args(
        [
            "--load_config",
            config,
            "--use_eval",
            "True",
            "--eval_episodes",
            str(eval_episodes),
            "--seed",
            str(eval_seed),
            "--seed_specify",
            "True",
            # nothing is written under --log_dir: a runner creates its directory only in run()
            "--log_dir",
            tempfile.gettempdir(),
            *([] if from_checkpoint or not load_weights else ["--model_dir", weights]),
            *overrides,
        ]
    )
    return parsed, from_checkpoint and load_weights, checkpoint


def check_run(
    run_dir: str, eval_episodes: int, eval_seed: int, weights_dir: str = "", overrides: tuple[str, ...] = ()
) -> None:
    """Every check :func:`rebuilt_runner` makes before it builds anything (the run's files, its
    config, the evaluation settings, the environment's package), so that a command can refuse
    bad arguments before it prints or evaluates anything.

    Raises:
        ConfigError, harl.envs.EnvNotInstalledError: what :func:`rebuilt_runner` would raise.
    """
    (args, _, env_args), _, _ = _evaluation_config(run_dir, eval_episodes, eval_seed, weights_dir, overrides)
    check_run_env_args(args["env"], env_args)


@contextmanager
def rebuilt_runner(
    run_dir: str,
    eval_episodes: int,
    eval_seed: int,
    weights_dir: str = "",
    overrides: tuple[str, ...] = (),
    explore: bool = False,
    load_weights: bool = True,
) -> Iterator[Any]:
    """The runner of ``run_dir`` rebuilt from its config with saved weights: ``weights_dir``
    (HARL's ``model_dir``, e.g. a snapshot), else the final weights in ``models/``, else
    ``models/checkpoint.pt`` for a run stopped before its end; ``overrides`` are further
    ``--key value`` arguments; ``explore``: its evaluation acts as in training (sampled
    actions) instead of deterministically; ``load_weights`` False: the networks stay as newly
    initialised (the caller loads what it needs). Nothing is written."""
    parsed, from_checkpoint, checkpoint = _evaluation_config(
        run_dir, eval_episodes, eval_seed, weights_dir, overrides, load_weights
    )
    args, algo_args, env_args = parsed
    from harl.runners import RUNNER_REGISTRY
    from harl.utils.checkpoint import load_checkpoint

    runner = RUNNER_REGISTRY[args["algo"]](args, algo_args, env_args)
    runner.eval_explore = explore
    try:
        if from_checkpoint:
            state = load_checkpoint(checkpoint, runner.device)
            runner.load_algorithm_state(state["algorithm"])
            print(
                f"note: {run_dir} has no final weights (it stopped at env step {int(state['total_steps']):,}); "
                "evaluating models/checkpoint.pt",
                file=sys.stderr,
            )
        yield runner
    finally:
        runner.close()


def evaluate_run(
    run_dir: str,
    eval_episodes: int,
    eval_seed: int,
    weights_dir: str = "",
    before_step: Callable[[Any], None] | None = None,
    overrides: tuple[str, ...] = (),
    explore: bool = False,
) -> dict:
    """Rebuild the run of ``run_dir`` (:func:`rebuilt_runner`) and return ``evaluate()``'s result
    with the run's algorithm, task and training seed; ``before_step(runner)`` is called before
    every vectorised evaluation step."""
    with rebuilt_runner(run_dir, eval_episodes, eval_seed, weights_dir, overrides, explore) as runner:
        # the run's own seed: its config.json merged onto the defaults (the runner has the evaluation's)
        train_seed = load_config_json(os.path.join(run_dir, "config.json"))[1]["seed"]["seed"]
        hook = None if before_step is None else (lambda: before_step(runner))
        result = runner.evaluate(hook)
        return {
            "algo": runner.args["algo"],
            "env": runner.args["env"],
            "task": runner.task_name,
            "train_seed": train_seed,
            **result,
        }
