"""Runner registry: ``RUNNER_REGISTRY[algo]`` is the runner class that trains ``algo``.

Runner modules are imported on first use so that ``--help`` and config errors stay fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Iterator

_RUNNERS = {
    "happo": "harl.runners.on_policy_ha_runner:OnPolicyHARunner",
    "hatrpo": "harl.runners.on_policy_ha_runner:OnPolicyHARunner",
    "haa2c": "harl.runners.on_policy_ha_runner:OnPolicyHARunner",
    "mappo": "harl.runners.on_policy_ma_runner:OnPolicyMARunner",
    "hasac": "harl.runners.off_policy_ha_runner:OffPolicyHARunner",
    "haddpg": "harl.runners.off_policy_ha_runner:OffPolicyHARunner",
    "hatd3": "harl.runners.off_policy_ha_runner:OffPolicyHARunner",
    "maddpg": "harl.runners.off_policy_ma_runner:OffPolicyMARunner",
    "matd3": "harl.runners.off_policy_ma_runner:OffPolicyMARunner",
    "haqo": "harl.runners.haqo_runner:HAQORunner",
    "qmix": "harl.runners.qmix_runner:QMIXRunner",
    "vdn": "harl.runners.qmix_runner:QMIXRunner",
}


class _LazyRegistry(Mapping):
    """A read-only mapping from algorithm name to runner class, importing on lookup."""

    def __init__(self, targets: dict[str, str]):
        self._targets = targets

    def __getitem__(self, algo: str):
        if algo not in self._targets:
            raise KeyError(f"unknown algorithm {algo!r}; available: {', '.join(sorted(self._targets))}")
        module_name, class_name = self._targets[algo].split(":")
        return getattr(importlib.import_module(module_name), class_name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)


RUNNER_REGISTRY: Mapping = _LazyRegistry(_RUNNERS)


def check_run_config(args: dict, algo_args: dict, env_args: dict) -> dict:
    """Every check of a run's config that needs no environment: the environment's arguments and
    package, a runner for the algorithm, and the runner's own settings (e.g. a budget below one
    rollout). ``examples/train.py`` calls it before building anything, and a sweep calls it for
    every run before starting any.

    Returns:
        the checked ``env_args`` (aliases resolved).

    Raises:
        harl.utils.configs_tools.ConfigError: the first problem, with what to change.
        harl.envs.base.EnvNotInstalledError: the environment's package is missing.
    """
    from harl.envs import check_run_env_args
    from harl.utils.errors import ConfigError

    env_args = check_run_env_args(args["env"], env_args)
    if args["algo"] not in RUNNER_REGISTRY:
        raise ConfigError(
            f"Algorithm '{args['algo']}' has a config but no runner; runnable: {', '.join(sorted(RUNNER_REGISTRY))}."
        )
    RUNNER_REGISTRY[args["algo"]].check_config(algo_args, env_args)
    return env_args
