"""Train an algorithm, e.g. ``python examples/train.py --algo happo --env pettingzoo_mpe``.

Any config key can be overridden with ``--KEY VALUE``; see ``--help`` and ``--list_keys``.
"""
import logging
import sys

from harl.utils.cli import handle_cli_errors, parse_train_args
from harl.utils.configs_tools import ConfigError, check_run_env_args


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
    from harl.runners import RUNNER_REGISTRY

    if args["algo"] not in RUNNER_REGISTRY:
        raise ConfigError(
            f"Algorithm '{args['algo']}' has a config but no runner; "
            f"runnable: {', '.join(sorted(RUNNER_REGISTRY))}."
        )
    runner = RUNNER_REGISTRY[args["algo"]](args, algo_args, env_args)
    try:
        runner.run()
    finally:
        runner.close()


if __name__ == "__main__":
    sys.exit(handle_cli_errors(main))
