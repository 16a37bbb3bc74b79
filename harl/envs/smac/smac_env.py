"""StarCraft II battles through oxwhirl's ``smac`` package (``--env smac``); ``--env smacv2``
reuses this adapter with its own package env.

The game is not a Python package: ``smac`` drives a StarCraft II binary found through
``SC2PATH`` and loads maps from ``$SC2PATH/Maps/SMAC_Maps``. :meth:`SMACEnv.check_args` looks
for all three before a run writes anything and raises one :class:`EnvNotInstalledError` that
says what is missing, how to get it, and which SMAX map (``--env smax``, no StarCraft II) can
stand in. The game packages are only imported when an environment is built.

What an agent sees and does is smac's own:

* actions: 0 no-op (the only action of a dead agent), 1 stop, 2-5 move north, south, east,
  west, then one attack per enemy (a Medivac's heal per ally); the package's availability
  masks are passed on;
* observations: the package's per-agent observation; shared observation (``state_type``): EP
  is the package's global state for every agent, FP is, per agent, the global state, the
  agent's observation and its one-hot id;
* reward: the package's team reward for every agent. An agent is done once dead, every agent
  once the battle is over; ``win_rate`` is 1 for a won battle and 0 otherwise; a battle that
  stops at the episode limit undecided is a truncation (``bad_transition``).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from harl.envs import check_env_args
from harl.envs.base import (
    EnvNotInstalledError,
    EnvStepResult,
    MultiAgentEnv,
    ResetResult,
    check_state_type,
)

SMAC_MAPS: tuple[str, ...] = (
    "3m",
    "8m",
    "25m",
    "5m_vs_6m",
    "8m_vs_9m",
    "10m_vs_11m",
    "27m_vs_30m",
    "MMM",
    "MMM2",
    "2s3z",
    "3s5z",
    "3s5z_vs_3s6z",
    "3s_vs_3z",
    "3s_vs_4z",
    "3s_vs_5z",
    "1c3s5z",
    "2m_vs_1z",
    "corridor",
    "6h_vs_8z",
    "2s_vs_1sc",
    "so_many_baneling",
    "bane_vs_bane",
    "2c_vs_64zg",
)
"""The maps of oxwhirl's SMAC."""


DEFAULT_SC2PATH: dict[str, str] = {
    "Linux": "~/StarCraftII",
    "Darwin": "/Applications/StarCraft II",
    "Windows": "C:/Program Files (x86)/StarCraft II",
}
"""Where pysc2 (which the packages drive) looks for StarCraft II when ``SC2PATH`` is unset,
by ``platform.system()``."""

_REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class StarCraftRequirements:
    """What an adapter needs besides its arguments, and where each part comes from."""

    env_name: str
    """The ``--env`` name, also the pip extra of ``setup.py`` that installs the package."""
    package: str
    """Top-level module of oxwhirl's package; ours has an ``env`` subpackage."""
    title: str
    """The benchmark's name in messages."""
    impostor: str
    """What an installed module named ``package`` without ``env`` is likely to be."""
    map_file: str
    """File name of the map in ``$SC2PATH/Maps/SMAC_Maps``; ``{map_name}`` is substituted."""
    maps_source: str
    """Where that file comes from, as "unzip <maps_source> into ..." reads."""


def sc2_path() -> Path:
    """The StarCraft II folder pysc2 will use: ``SC2PATH``, else the platform's default."""
    default = DEFAULT_SC2PATH.get(platform.system(), DEFAULT_SC2PATH["Linux"])
    return Path(os.environ.get("SC2PATH", default)).expanduser()


def _has_env_subpackage(package: str) -> bool | None:
    """None when no module ``package`` is installed, else whether it has an ``env`` subpackage.

    Only files are looked at: importing an unrelated module of the same name (SMAC3, a
    hyperparameter optimiser, is ``smac`` too) is slow and may fail.
    """
    try:
        spec = importlib.util.find_spec(package)
        if spec is None:
            return None
        locations = spec.submodule_search_locations
        return bool(locations) and (
            importlib.machinery.PathFinder.find_spec(f"{package}.env", list(locations)) is not None
        )
    except (ImportError, ValueError):  # a module of that name is loaded but has no usable spec
        return False


def _smax_alternative(map_name: str) -> str:
    # the map table only: harl.envs.smax.maps imports no JAX, so this stays fast
    from harl.envs.smax.maps import MAPS, SMAC_MAP_NAMES

    if map_name not in MAPS:
        return (
            f"SMAX (--env smax, StarCraft-like battles in JAX without StarCraft II) has no "
            f"counterpart of {map_name}; its SMAC maps are {', '.join(SMAC_MAP_NAMES)}."
        )
    tuned = ""
    if (_REPO_ROOT / "tuned_configs" / "smax" / map_name).is_dir():
        tuned = f"; tuned configurations are in tuned_configs/smax/{map_name}/"
    return (
        f"Without StarCraft II, SMAX plays a map of the same name in JAX: python examples/train.py "
        f"--env smax --map_name {map_name} --algo ALGO --exp_name NAME (install it with "
        f'pip install -e ".[smax]"{tuned}).'
    )


def check_requirements(req: StarCraftRequirements, map_name: str) -> None:
    """Raise one ``EnvNotInstalledError`` naming everything missing to play ``map_name``.

    The message is one paragraph: the missing package, StarCraft II or map file, how to get
    each, and the SMAX map that needs none of them. Only files are inspected, so this takes
    milliseconds and imports neither the game packages nor JAX.
    """
    install = f'pip install -e ".[{req.env_name}]"'
    problems = []
    has_env = _has_env_subpackage(req.package)
    if has_env is None:
        problems.append(
            f"the Python package {req.package} (oxwhirl's {req.title}) is not installed; install it with: {install}"
        )
    elif not has_env:
        problems.append(
            f"the installed module {req.package} has no {req.package}.env, so it is "
            f"{req.impostor}, not oxwhirl's {req.title}; run pip uninstall {req.package}, "
            f"then {install}"
        )
    root = sc2_path()
    if not (root / "Versions").is_dir():
        problems.append(
            f"StarCraft II was not found in {root} (no Versions folder there; SC2PATH sets the "
            f"folder): download StarCraft II 4.10 for Linux from Blizzard's s2client-proto "
            f"downloads page, https://github.com/Blizzard/s2client-proto#downloads, and unzip it "
            f"(password iagreetotheeula) so that the game is in ~/StarCraftII, or set SC2PATH to "
            f"the folder that holds it"
        )
    map_path = root / "Maps" / "SMAC_Maps" / req.map_file.format(map_name=map_name)
    if not map_path.is_file():
        problems.append(f"the map file {map_path} is missing: unzip {req.maps_source} into {root / 'Maps'}")
    if problems:
        raise EnvNotInstalledError(
            f"{req.env_name} cannot play {map_name}: {'; '.join(problems)}. {_smax_alternative(map_name)}"
        )


def import_package_env(requirements: StarCraftRequirements, class_name: str) -> Any:
    """``<package>.env.<class_name>``; a broken installation becomes ``EnvNotInstalledError``."""
    module_name = f"{requirements.package}.env"
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise EnvNotInstalledError(
            f"{requirements.env_name}: cannot import {class_name} from {module_name} ({err}); "
            f"reinstall oxwhirl's {requirements.title} with: "
            f'pip install -e ".[{requirements.env_name}]"'
        ) from err


class SMACEnv(MultiAgentEnv):
    """One StarCraft II battle of oxwhirl's SMAC (see the module docstring for what agents see).

    Subclasses for other packages of the same API set :attr:`requirements` and
    :attr:`map_names` and override :meth:`_make_package_env`.
    """

    episode_metric_names = ("win_rate",)
    requirements = StarCraftRequirements(
        env_name="smac",
        package="smac",
        title="SMAC",
        impostor="SMAC3 (the PyPI package smac, an unrelated hyperparameter optimiser by automl)",
        map_file="{map_name}.SC2Map",
        maps_source="SMAC's maps (https://github.com/oxwhirl/smac/releases/download/v0.1-beta1/SMAC_Maps.zip)",
    )
    map_names: tuple[str, ...] = SMAC_MAPS

    def __init__(self, env_args: dict[str, Any]) -> None:
        args = check_env_args(self.requirements.env_name, env_args)
        self.map_name: str = args["map_name"]
        self.state_type: str = args["state_type"]
        self._env = self._make_package_env(seed=None)
        env_info = self._env.get_env_info()
        self.n_agents = int(env_info["n_agents"])
        self.episode_limit = int(env_info["episode_limit"])
        obs_size, state_size = int(env_info["obs_shape"]), int(env_info["state_shape"])
        share_size = state_size + (obs_size + self.n_agents if self.state_type == "FP" else 0)
        self.observation_spaces = [
            spaces.Box(-np.inf, np.inf, (obs_size,), dtype=np.float32) for _ in range(self.n_agents)
        ]
        self.share_observation_spaces = [
            spaces.Box(-np.inf, np.inf, (share_size,), dtype=np.float32) for _ in range(self.n_agents)
        ]
        self.action_spaces = [spaces.Discrete(int(env_info["n_actions"])) for _ in range(self.n_agents)]
        self._agent_ids = np.eye(self.n_agents, dtype=np.float32)
        self._steps = 0

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """Raise ``ValueError`` for an unknown map or state type, then
        ``EnvNotInstalledError`` when the package, StarCraft II or the map file is missing."""
        name = cls.requirements.env_name
        if args["map_name"] not in cls.map_names:
            raise ValueError(f"{name}: unknown map_name {args['map_name']!r}; valid: {', '.join(cls.map_names)}")
        check_state_type(args["state_type"], f"{name}: state_type")
        check_requirements(cls.requirements, args["map_name"])

    def _make_package_env(self, seed: int | None) -> Any:
        """The package's environment for ``self.map_name``; the game starts at its first
        ``reset()``, which is when ``seed`` is used."""
        env_class = import_package_env(self.requirements, "StarCraft2Env")
        return env_class(map_name=self.map_name, seed=seed)

    def reset(self, seed: int | None = None) -> ResetResult:
        """Start a battle; a seed starts a new game with it, ``None`` continues the game."""
        if seed is not None:
            # the package hands its seed to StarCraft II only when the game launches
            self._env.close()
            self._env = self._make_package_env(seed)
        self._env.reset()
        self._steps = 0
        return self._observe()

    def step(self, actions: list[np.ndarray]) -> EnvStepResult:
        """Apply one ``(1,)`` action index per agent (SMAC's layout) and advance one step."""
        reward, terminated, env_info = self._env.step([int(np.asarray(a).reshape(-1)[0]) for a in actions])
        self._steps += 1
        obs, share_obs, avail = self._observe()
        masks = np.stack(avail)
        # the package leaves a dead agent exactly one available action: the no-op
        dead = (masks[:, 0] == 1) & ~masks[:, 1:].any(axis=1)
        won = bool(env_info.get("battle_won", False))
        info: dict[str, Any] = {"bad_transition": bool(terminated) and self._reached_limit(env_info, won, dead)}
        if terminated:
            info["episode_metrics"] = {"win_rate": 1.0 if won else 0.0}
        rewards = np.full(self.n_agents, reward, dtype=np.float32)
        return obs, share_obs, rewards, dead | bool(terminated), info, avail

    def close(self) -> None:
        """Close the package's environment and the game it launched."""
        self._env.close()

    def _reached_limit(self, env_info: dict[str, Any], won: bool, dead: np.ndarray) -> bool:
        """Whether the episode that just ended was cut by the episode limit, undecided."""
        if "episode_limit" in env_info:
            return bool(env_info["episode_limit"])
        # the package only reports the limit with continuing_episode; otherwise an ended battle
        # that nobody won while allies were alive can only have stopped at the limit
        return not won and self._steps >= self.episode_limit and not dead.all()

    def _observe(self) -> ResetResult:
        obs = [np.asarray(o, dtype=np.float32) for o in self._env.get_obs()]
        state = np.asarray(self._env.get_state(), dtype=np.float32)
        share_obs = np.tile(state, (self.n_agents, 1))
        if self.state_type == "FP":
            share_obs = np.concatenate([share_obs, np.stack(obs), self._agent_ids], axis=1)
        avail = [np.asarray(a, dtype=np.float32) for a in self._env.get_avail_actions()]
        return obs, share_obs, avail
