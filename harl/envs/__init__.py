"""Environment registry and the factories runners call.

Adapters are imported lazily by name, so a missing optional package (``mpe2``,
``gymnasium-robotics``) only fails for the environment that needs it, with the pip line to run.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from harl.envs.base import EnvNotInstalledError, EnvSpec, EnvWorkerError, MultiAgentEnv, StepResult
from harl.envs.vec_env import EnvFactory, InProcessVecEnv, SubprocVecEnv
from harl.utils import configs_tools
from harl.utils.errors import ConfigError
from harl.utils.files import load_yaml

__all__ = [
    "ENV_REGISTRY",
    "EnvNotInstalledError",
    "EnvWorkerError",
    "MultiAgentEnv",
    "StepResult",
    "check_env_args",
    "check_run_env_args",
    "env_defaults",
    "env_spec",
    "get_task_name",
    "load_adapter",
    "make_eval_env",
    "make_train_env",
    "resolve_n_env_workers",
]

ENV_REGISTRY: dict[str, str] = {
    "pettingzoo_mpe": "harl.envs.pettingzoo_mpe",
    "mamujoco": "harl.envs.mamujoco",
    "smac": "harl.envs.smac",
    "smacv2": "harl.envs.smacv2",
    "smax": "harl.envs.smax",
    "toy": "harl.envs.toy",
    "occupation": "harl.envs.occupation",
    "football": "harl.envs.football",
    "dexhands": "harl.envs.dexhands",
}
"""Environment name (the ``--env`` argument) -> the package of its family, whose ``SPEC``
(:class:`~harl.envs.base.EnvSpec`) names its adapter, task names and extras."""

logger = logging.getLogger(__name__)

# Offset between train and eval seeds (ARCHITECTURE.md: eval env k gets seed*1000 + 50000 + k).
_EVAL_SEED_OFFSET = 50000


def env_spec(env_name: str) -> EnvSpec:
    """The :class:`~harl.envs.base.EnvSpec` of ``env_name``'s family (its package's ``SPEC``).

    Raises:
        ValueError: the name is not registered (the message lists the registered names).
    """
    if env_name not in ENV_REGISTRY:
        raise ValueError(
            f"unknown environment {env_name!r}; registered environments: {', '.join(sorted(ENV_REGISTRY))}"
        )
    return importlib.import_module(ENV_REGISTRY[env_name]).SPEC


def load_adapter(env_name: str) -> type[MultiAgentEnv]:
    """Import and return the adapter class of ``env_name``.

    Raises:
        ValueError: the name is not registered (the message lists the registered names).
        EnvNotInstalledError: the environment's package is missing (the message has the pip line).
    """
    spec = env_spec(env_name)
    module_name, _, class_name = spec.adapter.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in spec.provides:
            raise
        command = spec.install_command or f'pip install -e ".[{spec.extra}]"'
        raise EnvNotInstalledError(
            f"environment {env_name!r} needs the Python package {missing!r}, which is not "
            f"installed; install it with: {command}"
        ) from exc
    return getattr(module, class_name)


def env_defaults(env_name: str) -> dict[str, Any]:
    """The defaults of ``harl/configs/envs_cfgs/<env_name>.yaml``."""
    env_spec(env_name)  # a registered name
    path = configs_tools.CONFIGS_DIR / "envs_cfgs" / f"{env_name}.yaml"
    defaults = load_yaml(path, "environment config", allow_empty=True) or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path} must be a mapping of keys to values.")
    return defaults


class CheckedEnvArgs(dict):
    """``env_args`` that :func:`check_env_args` completed and validated for ``env_name``: checking
    them again (the CLI, the runner, the vectorised env and each adapter all may) returns them
    as they are. A plain ``dict`` in every other respect (JSON, pickling to env workers)."""

    def __init__(self, env_name: str, args: dict[str, Any]) -> None:
        super().__init__(args)
        self.env_name = env_name

    def __reduce__(self):
        return (CheckedEnvArgs, (self.env_name, dict(self)))


def check_env_args(env_name: str, env_args: dict[str, Any]) -> dict[str, Any]:
    """Validate ``env_args`` for ``env_name`` and return them completed with the YAML defaults.

    Keys missing from ``env_args`` (for example a HARL ``config.json`` without ``max_cycles``)
    take the YAML default; unknown keys and unsupported values raise ``ValueError`` naming the
    valid ones.
    """
    if isinstance(env_args, CheckedEnvArgs) and env_args.env_name == env_name:
        return env_args  # validated once: a checked dict passes through
    adapter_cls = load_adapter(env_name)
    defaults = env_defaults(env_name)
    unknown = sorted(set(env_args) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown env_args key(s) {unknown} for environment {env_name!r}; valid keys: "
            f"{sorted(defaults)} (see harl/configs/envs_cfgs/{env_name}.yaml)"
        )
    merged = {**defaults, **env_args}
    adapter_cls.check_args(merged)
    return CheckedEnvArgs(env_name, merged)


def check_run_env_args(env_name: str, env_args: dict[str, Any]) -> dict[str, Any]:
    """:func:`check_env_args` for a run about to start: an unsupported value is a ``ConfigError``
    (one line on the command line, nothing written).

    Raises:
        ConfigError: an unsupported value (the adapter's message names the valid ones).
        EnvNotInstalledError: the environment's package (or game) is missing.
    """
    try:
        return check_env_args(env_name, env_args)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def get_task_name(env_name: str, env_args: dict[str, Any]) -> str:
    """The task part of the run directory, e.g. ``simple_spread_v2-continuous``,
    ``HalfCheetah-v2-2x3``; scenario names are kept as the user gave them."""
    return env_spec(env_name).task_name({**env_defaults(env_name), **env_args})


def resolve_n_env_workers(n_env_workers: int | None, n_threads: int, env_name: str | None = None) -> int:
    """Number of worker processes: None = the environment's ``default_env_workers`` (0 unless
    its simulator is slow), 0 = in-process, k > 0 = k (at most one per env), -1 = one per CPU
    core available to this process, at most ``n_threads``."""
    if n_env_workers is None:
        n_env_workers = load_adapter(env_name).default_env_workers if env_name else 0
    if not isinstance(n_env_workers, int) or isinstance(n_env_workers, bool):
        raise ValueError(
            f"n_env_workers must be null (the environment's default), -1 (one per CPU core), 0 "
            f"(in-process) or a positive number of worker processes, got {n_env_workers!r}"
        )
    if n_env_workers == -1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return min(cores or 1, n_threads)
    if n_env_workers < -1:
        raise ValueError(
            f"n_env_workers must be -1 (one per CPU core), 0 (in-process) or a positive number "
            f"of worker processes, got {n_env_workers}"
        )
    return min(n_env_workers, n_threads)


def _make_vec_env(
    env_name: str,
    base_seed: int,
    n_threads: int,
    env_args: dict[str, Any],
    n_env_workers: int | None,
    reply_timeout_s: float | None = None,
) -> InProcessVecEnv | SubprocVecEnv:
    if n_threads < 1:
        raise ValueError(f"the number of environments must be at least 1, got {n_threads}")
    env_args = check_env_args(env_name, env_args)  # fails fast, before any process starts
    batched = load_adapter(env_name).make_batched_vec_env(env_args, n_threads, base_seed)
    if batched is not None:
        if n_env_workers:
            logger.info(
                "%s steps all its environments in one batched call; n_env_workers=%s does not apply",
                env_name,
                n_env_workers,
            )
        return batched
    factory = EnvFactory(env_spec(env_name).adapter, env_args)
    n_workers = resolve_n_env_workers(n_env_workers, n_threads, env_name)
    if n_workers == 0:
        return InProcessVecEnv(factory, n_threads, base_seed)
    logger.info("%s: %d environments step in %d worker processes", env_name, n_threads, n_workers)
    return SubprocVecEnv(factory, n_threads, base_seed, n_workers, env_name=env_name, reply_timeout_s=reply_timeout_s)


def make_train_env(
    env_name: str,
    seed: int,
    n_threads: int,
    env_args: dict[str, Any],
    n_env_workers: int | None,
    reply_timeout_s: float | None = None,
) -> InProcessVecEnv | SubprocVecEnv:
    """``n_threads`` training environments; env ``k`` is seeded ``seed * 1000 + k``.

    ``n_env_workers``: 0 steps them in this process, k > 0 in k worker processes,
    -1 in one worker per CPU core (capped at ``n_threads``), None as the environment prefers
    (``default_env_workers``). ``reply_timeout_s``: how long a worker may take to answer before the
    vector raises ``EnvWorkerError`` (None: no limit).
    """
    return _make_vec_env(env_name, seed * 1000, n_threads, env_args, n_env_workers, reply_timeout_s)


def make_eval_env(
    env_name: str,
    seed: int,
    n_threads: int,
    env_args: dict[str, Any],
    n_env_workers: int | None,
    reply_timeout_s: float | None = None,
) -> InProcessVecEnv | SubprocVecEnv:
    """Like :func:`make_train_env` for evaluation; env ``k`` is seeded
    ``seed * 1000 + 50000 + k`` so evaluation never replays training episodes."""
    return _make_vec_env(env_name, seed * 1000 + _EVAL_SEED_OFFSET, n_threads, env_args, n_env_workers, reply_timeout_s)
