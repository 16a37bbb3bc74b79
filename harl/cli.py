"""Command line of ``examples/train.py``: argument parsing and clean error reporting."""

from __future__ import annotations

import argparse
import errno
import sys
import textwrap
from typing import Callable

from harl.utils.configs_tools import (
    DEFAULT_ALGO,
    DEFAULT_ENV,
    DEFAULT_EXP_NAME,
    build_run_config,
    format_config_keys,
    parse_override_tokens,
)
from harl.utils.errors import ConfigError

CONFIG_EXIT_CODE = 2
RUNTIME_EXIT_CODE = 1


def _registry_keys(module: str, attribute: str) -> tuple[list[str] | None, str]:
    """Sorted keys of a registry, or None and the reason when it cannot be imported yet."""
    try:
        registry = getattr(__import__(module, fromlist=[attribute]), attribute)
    except (ImportError, AttributeError) as err:
        return None, f"{module}.{attribute} is not importable ({err})"
    return sorted(registry), ""


def build_parser() -> argparse.ArgumentParser:
    """HARL's train.py options plus ``--resume`` and ``--list_keys``; choices come from
    ``harl.runners.RUNNER_REGISTRY`` and ``harl.envs.ENV_REGISTRY``."""
    algos, algos_problem = _registry_keys("harl.runners", "RUNNER_REGISTRY")
    envs, envs_problem = _registry_keys("harl.envs", "ENV_REGISTRY")
    listing = "\n".join(
        textwrap.fill(
            f"{label}: {', '.join(keys) if keys is not None else problem}",
            width=88,
            subsequent_indent="  ",
        )
        for label, keys, problem in (
            ("Algorithms", algos, algos_problem),
            ("Environments", envs, envs_problem),
        )
    )
    parser = argparse.ArgumentParser(
        description="Train a multi-agent RL algorithm (HARL's command line).",
        epilog=(
            f"{listing}\n\n"
            "Any key of the algorithm or environment YAML can be overridden with --KEY VALUE or\n"
            "--KEY=VALUE (e.g. --lr 0.001 --hidden_sizes [256,256]). List the keys, their\n"
            "defaults and meaning with: --algo ALGO --env ENV --list_keys"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # Abbreviations would let a config key such as --load be taken for --load_config.
        allow_abbrev=False,
    )
    parser.add_argument("--algo", choices=algos, default=None, help=f"algorithm (default {DEFAULT_ALGO})")
    parser.add_argument("--env", choices=envs, default=None, help=f"environment (default {DEFAULT_ENV})")
    parser.add_argument("--exp_name", default=None, help=f"experiment name (default {DEFAULT_EXP_NAME})")
    parser.add_argument(
        "--load_config",
        default="",
        help="start from this config.json (e.g. tuned_configs/...) instead of the YAML defaults",
    )
    parser.add_argument(
        "--resume",
        default="",
        metavar="RUN_DIR",
        help="continue an interrupted run from RUN_DIR/models/checkpoint.pt with its config.json",
    )
    parser.add_argument(
        "--list_keys",
        action="store_true",
        help="print every config key of --algo/--env with its default and exit",
    )
    return parser


def parse_train_args(argv: list[str]) -> tuple[dict, dict, dict] | None:
    """Parse ``examples/train.py``'s command line into ``(args, algo_args, env_args)``.

    Returns None after printing the key listing for ``--list_keys``.

    Raises:
        ConfigError: unknown or malformed overrides, conflicting options, bad config files.
    """
    namespace, rest = build_parser().parse_known_args(argv)
    overrides = parse_override_tokens(rest)
    if namespace.list_keys:
        print(format_config_keys(namespace.algo or DEFAULT_ALGO, namespace.env or DEFAULT_ENV))
        return None
    return build_run_config(
        namespace.algo,
        namespace.env,
        namespace.exp_name,
        namespace.load_config,
        namespace.resume,
        overrides,
    )


# Errors of writing logs and checkpoints that the user fixes outside the program.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM)


def handle_cli_errors(main: Callable[[], None]) -> int:
    """Run ``main`` and turn the errors a user can fix into a message and an exit code.

    Returns:
        0 on success, 2 for a ConfigError, 1 for EnvNotInstalledError, EnvWorkerError,
        CheckpointError and NonFiniteError, 128 + the signal's number for a run stopped by
        SIGTERM or SIGINT (after its final checkpoint), 130 for a KeyboardInterrupt (a second
        Ctrl+C during training, which stops at once), with the line of
        :func:`harl.utils.interrupt.current_message`. Other exceptions propagate with their
        traceback, since they are bugs.
    """
    try:
        main()
    except KeyboardInterrupt:
        from harl.utils.interrupt import EXIT_CODE, current_message

        print(current_message(), file=sys.stderr)
        return EXIT_CODE
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return CONFIG_EXIT_CODE
    except OSError as err:
        if err.errno not in _WRITE_ERRNOS:
            raise
        where = f" ({err.filename})" if err.filename else ""
        print(
            f"error: {err.strerror}{where}. Free some space or fix the permissions, or choose another "
            "--log_dir; a run with a checkpoint continues with --resume RUN_DIR.",
            file=sys.stderr,
        )
        return RUNTIME_EXIT_CODE
    except Exception as err:  # noqa: BLE001 - re-raised below unless it is a known user error
        from harl.envs.base import EnvNotInstalledError, EnvWorkerError

        if not isinstance(err, (EnvNotInstalledError, EnvWorkerError)):
            # Imported only now: these modules load torch, too slow for --help and for
            # reporting a missing environment
            from harl.runners.base_runner import RunStopped
            from harl.utils.checkpoint import CheckpointError
            from harl.utils.finite import NonFiniteError

            if isinstance(err, RunStopped):
                print(str(err), file=sys.stderr)
                return err.exit_code
            if not isinstance(err, (CheckpointError, NonFiniteError)):
                raise
        print(f"error ({type(err).__name__}): {err}", file=sys.stderr)
        return RUNTIME_EXIT_CODE
    return 0
