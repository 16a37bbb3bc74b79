"""Train an algorithm, e.g. ``python examples/train.py --algo happo --env pettingzoo_mpe``.

Any config key can be overridden with ``--KEY VALUE``; see ``--help`` and ``--list_keys``.
"""

import logging
import os
import sys

if __name__ == "__main__":  # first, before torch and JAX load: Ctrl+C ends with one line and exit 130
    from harl.utils.interrupt import install

    install()

from harl.cli import handle_cli_errors, parse_train_args  # noqa: E402
from harl.envs import check_run_env_args  # noqa: E402
from harl.utils.interrupt import BEFORE_THE_RUN, hand_over, set_message  # noqa: E402


def interrupted_message(run_dir: str) -> str:
    """The line of a Ctrl+C outside the training loop (whose Ctrl+C the runner handles: a final
    checkpoint, then the resume command): what ``run_dir`` ("" before it exists) holds."""
    if not run_dir:
        return BEFORE_THE_RUN
    models = os.path.join(run_dir, "models")
    if os.path.isfile(os.path.join(models, "actor_agent0.pt")):
        return f"interrupted (Ctrl+C) after the run finished; its results are in {run_dir}"
    if os.path.isfile(os.path.join(models, "checkpoint.pt")):
        return (
            f"interrupted (Ctrl+C); the run's last checkpoint is kept: continue with: python "
            f"examples/train.py --resume {run_dir}"
        )
    return (
        f"interrupted (Ctrl+C) before the run's first checkpoint; {run_dir} holds its config and "
        "logs only: start the run again"
    )


def main() -> None:
    """Parse the command line, build the runner and train."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parsed = parse_train_args(sys.argv[1:])
    if parsed is None:
        return
    args, algo_args, env_args = parsed
    # A missing environment (StarCraft II, a package) is reported before torch is even imported.
    env_args = check_run_env_args(args["env"], env_args)
    # Imported here, not at the top: --help and --list_keys must work without the runners.
    from harl.runners import RUNNER_REGISTRY, check_run_config

    env_args = check_run_config(args, algo_args, env_args)
    if algo_args["train"].get("model_dir"):  # a damaged weight file is refused by name, not from inside torch
        from harl.utils.checkpoint import check_weights

        check_weights(algo_args["train"]["model_dir"])
    runner = None
    set_message(lambda: interrupted_message(getattr(runner, "run_dir", "") or args.get("resume", "")))
    runner = RUNNER_REGISTRY[args["algo"]](args, algo_args, env_args)
    hand_over()  # the runner's own SIGINT handler stops training at a safe point, after a checkpoint
    try:
        runner.run()
    finally:
        runner.close()


if __name__ == "__main__":
    sys.exit(handle_cli_errors(main))
