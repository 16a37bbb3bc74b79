"""Environment registry and the factories runners call.

Adapters are imported lazily by name, so a missing optional package (``mpe2``,
``gymnasium-robotics``) only fails for the environment that needs it, with the pip line to run.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harl.envs.base import EnvNotInstalledError, EnvWorkerError, MultiAgentEnv, StepResult
from harl.envs.vec_env import EnvFactory, InProcessVecEnv, SubprocVecEnv
from harl.utils.errors import ConfigError
from harl.utils.files import load_yaml

__all__ = [
    "check_run_env_args",
    "ENV_REGISTRY",
    "EnvNotInstalledError",
    "EnvWorkerError",
    "MultiAgentEnv",
    "StepResult",
    "check_env_args",
    "env_defaults",
    "get_task_name",
    "load_adapter",
    "make_eval_env",
    "make_train_env",
    "resolve_n_env_workers",
]

ENV_REGISTRY: dict[str, str] = {
    "pettingzoo_mpe": "harl.envs.pettingzoo_mpe.pettingzoo_mpe_env:PettingZooMPEEnv",
    "mamujoco": "harl.envs.mamujoco.mamujoco_env:MAMuJoCoEnv",
    "smac": "harl.envs.smac.smac_env:SMACEnv",
    "smacv2": "harl.envs.smacv2.smacv2_env:SMACv2Env",
    "smax": "harl.envs.smax.smax_env:SMAXEnv",
    "toy": "harl.envs.toy.toy_env:ToyEnv",
    "occupation": "harl.envs.occupation.occupation_env:OccupationEnv",
    "football": "harl.envs.football.football_env:FootballEnv",
    "dexhands": "harl.envs.dexhands.dexhands_env:DexHandsEnv",
}
"""Environment name (the ``--env`` argument) -> ``"module:AdapterClass"``."""

# Environment name -> (pip extra of setup.py, top-level modules that extra provides).
_ENV_EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pettingzoo_mpe": ("mpe", ("mpe2", "pettingzoo")),
    "mamujoco": ("mamujoco", ("gymnasium_robotics", "mujoco")),
    "smax": ("smax", ("jaxmarl", "jax", "jaxlib", "flax", "chex")),
    "football": ("football", ("gfootball",)),
}
# Environments whose package the pip extra cannot build alone: the command that installs it.
_INSTALL_COMMANDS: dict[str, str] = {
    "football": "bash scripts/install_football.sh (builds gfootball from source, about 15 minutes; "
    "installs its Debian build packages with apt-get, so run it as root or install those first)",
}

_TASK_NAMES: dict[str, Callable[[dict[str, Any]], str]] = {
    "pettingzoo_mpe": lambda a: f"{a['scenario']}-{'continuous' if a['continuous_actions'] else 'discrete'}",
    "mamujoco": lambda a: f"{a['scenario']}-{a['agent_conf']}",
    "smac": lambda a: a["map_name"],
    "smacv2": lambda a: a["map_name"],
    "smax": lambda a: a["map_name"],
    "toy": lambda a: "toy-mixed" if a["continuous_agent"] else "toy-discrete",
    "occupation": lambda a: f"{a['n_agents']}agents-{a['n_targets']}targets",
    "football": lambda a: a["env_name"],
    "dexhands": lambda a: a["task"],
}

logger = logging.getLogger(__name__)

_ENV_CFG_DIR = Path(__file__).resolve().parent.parent / "configs" / "envs_cfgs"

# Offset between train and eval seeds (ARCHITECTURE.md: eval env k gets seed*1000 + 50000 + k).
_EVAL_SEED_OFFSET = 50000


def _check_name(env_name: str) -> None:
    if env_name not in ENV_REGISTRY:
        raise ValueError(
            f"unknown environment {env_name!r}; registered environments: {', '.join(sorted(ENV_REGISTRY))}"
        )


def load_adapter(env_name: str) -> type[MultiAgentEnv]:
    """Import and return the adapter class of ``env_name``.

    Raises:
        ValueError: the name is not registered (the message lists the registered names).
        EnvNotInstalledError: the environment's package is missing (the message has the pip line).
    """
    _check_name(env_name)
    module_name, _, class_name = ENV_REGISTRY[env_name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        extra = _ENV_EXTRAS.get(env_name)
        missing = (exc.name or "").split(".")[0]
        if extra is None or missing not in extra[1]:
            raise
        command = _INSTALL_COMMANDS.get(env_name, f'pip install -e ".[{extra[0]}]"')
        raise EnvNotInstalledError(
            f"environment {env_name!r} needs the Python package {missing!r}, which is not "
            f"installed; install it with: {command}"
        ) from exc
    return getattr(module, class_name)


def env_defaults(env_name: str) -> dict[str, Any]:
    """The defaults of ``harl/configs/envs_cfgs/<env_name>.yaml``."""
    _check_name(env_name)
    defaults = load_yaml(_ENV_CFG_DIR / f"{env_name}.yaml", "environment config", allow_empty=True) or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{_ENV_CFG_DIR / f'{env_name}.yaml'} must be a mapping of keys to values.")
    return defaults


def check_env_args(env_name: str, env_args: dict[str, Any]) -> dict[str, Any]:
    """Validate ``env_args`` for ``env_name`` and return them completed with the YAML defaults.

    Keys missing from ``env_args`` (for example a HARL ``config.json`` without ``max_cycles``)
    take the YAML default; unknown keys and unsupported values raise ``ValueError`` naming the
    valid ones.
    """
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
    return merged


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
    _check_name(env_name)
    return _TASK_NAMES[env_name]({**env_defaults(env_name), **env_args})


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
    factory = EnvFactory(ENV_REGISTRY[env_name], env_args)
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
