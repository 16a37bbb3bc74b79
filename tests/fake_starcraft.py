"""Fake ``smac`` and ``smacv2`` packages and a fake StarCraft II folder, for the adapter tests.

StarCraft II cannot run here, so :func:`install_fakes` writes into a temporary folder small
packages that follow the documented API of oxwhirl's ``smac.env.StarCraft2Env`` and
``smacv2.env.StarCraftCapabilityEnvWrapper``, plus a StarCraft II folder with ``Versions/`` and
the map files, and points ``sys.path`` and ``SC2PATH`` at them.

The fake battle (:class:`FakeBattle`) is small and deterministic per seed: allies die at random
times (from then on only the no-op is available to them), moves and attacks are available at
random (an attack only on a living enemy), every attack takes one hit point off its target, the
battle is won once every enemy is dead and otherwise ends when every ally is dead or at the
episode limit. ``step`` raises on an unavailable action, so a run that finishes proves the
adapter and the algorithms respected the availability masks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent

FAKE_TEAMS: dict[str, tuple[int, int]] = {"3m": (3, 3), "MMM2": (10, 12), "corridor": (6, 24)}
"""(allies, enemies) of the fake smac maps; other names raise KeyError, as smac's registry does."""

SMACV2_GEN_MAPS = ("10gen_protoss", "10gen_terran", "10gen_zerg")

ALL_MAP_FILES = (*FAKE_TEAMS, "32x32_flat")
"""The map files of the fake StarCraft II folder: the fake smac maps and SMACv2's one map."""

FAKE_EPISODE_LIMIT = 25
"""Shorter than any real map's, so that tiny test runs see battles end by the limit."""

ENEMY_HIT_POINTS = 3
P_ALLY_DEATH = 0.06
P_MOVE_AVAILABLE = 0.7
P_ENEMY_IN_RANGE = 0.5
N_NON_ATTACK_ACTIONS = 6

# The keyword arguments smacv2's StarCraft2Env accepts (the wrapper passes all of its own on).
SMACV2_PARAMETERS = frozenset(
    {
        "map_name",
        "step_mul",
        "move_amount",
        "difficulty",
        "game_version",
        "seed",
        "continuing_episode",
        "obs_all_health",
        "obs_own_health",
        "obs_last_action",
        "obs_pathing_grid",
        "obs_terrain_height",
        "obs_instead_of_state",
        "obs_timestep_number",
        "obs_own_pos",
        "obs_starcraft",
        "conic_fov",
        "num_fov_actions",
        "state_last_action",
        "state_timestep_number",
        "reward_sparse",
        "reward_only_positive",
        "reward_death_value",
        "reward_win",
        "reward_defeat",
        "reward_negative_scale",
        "reward_scale",
        "reward_scale_rate",
        "use_unit_ranges",
        "min_attack_range",
        "kill_unit_step_mul",
        "fully_observable",
        "capability_config",
        "replay_dir",
        "replay_prefix",
        "window_size_x",
        "window_size_y",
        "heuristic_ai",
        "heuristic_rest",
        "debug",
        "prob_obs_enemy",
        "action_mask",
    }
)

_SMAC_ENV_INIT = "from fake_starcraft import FakeStarCraft2Env as StarCraft2Env\n"
_SMACV2_ENV_INIT = (
    "from fake_starcraft import FakeStarCraft2Env as StarCraft2Env\n"
    "from fake_starcraft import FakeCapabilityEnvWrapper as StarCraftCapabilityEnvWrapper\n"
)
# SMAC3 (the hyperparameter optimiser) is also "smac"; importing it must never be needed.
_SMAC3_INIT = "raise ImportError('SMAC3 must not be imported by the requirements check')\n"


class FakeBattle:
    """The battle behind both fakes, with smac's StarCraft2Env methods."""

    def __init__(self, n_agents: int, n_enemies: int, seed: int | None) -> None:
        self.n_agents, self.n_enemies = n_agents, n_enemies
        self.n_actions = N_NON_ATTACK_ACTIONS + n_enemies
        self.obs_size = 4 + 2 * n_enemies
        self.state_size = 3 * (n_agents + n_enemies)
        self.episode_limit = FAKE_EPISODE_LIMIT
        self.seed_value = seed
        self.launched = False
        self.closed = False
        self._rng = np.random.default_rng(seed)

    def get_env_info(self) -> dict[str, int]:
        """Sizes, as smac's ``MultiAgentEnv.get_env_info``; available before the game starts."""
        return {
            "state_shape": self.state_size,
            "obs_shape": self.obs_size,
            "n_actions": self.n_actions,
            "n_agents": self.n_agents,
            "episode_limit": self.episode_limit,
        }

    def reset(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Start a battle; the first call "launches the game"."""
        if self.closed:
            raise RuntimeError("reset() after close()")
        self.launched = True
        self._steps = 0
        self._allies_alive = np.ones(self.n_agents, dtype=bool)
        self._enemy_health = np.full(self.n_enemies, ENEMY_HIT_POINTS)
        self._roll()
        return self.get_obs(), self.get_state()

    def step(self, actions: list[int]) -> tuple[float, bool, dict[str, Any]]:
        """One step; raises on an action that ``get_avail_actions`` did not offer."""
        if not self.launched or self.closed:
            raise RuntimeError("step() before reset() or after close()")
        if len(actions) != self.n_agents:
            raise ValueError(f"{len(actions)} actions for {self.n_agents} agents")
        for agent, action in enumerate(actions):
            if not isinstance(action, int) or not self._avail[agent, action]:
                raise ValueError(
                    f"agent {agent} took unavailable action {action!r}; available: "
                    f"{np.flatnonzero(self._avail[agent]).tolist()}"
                )
        targets = [a - N_NON_ATTACK_ACTIONS for a in actions if a >= N_NON_ATTACK_ACTIONS]
        np.subtract.at(self._enemy_health, targets, 1)
        self._enemy_health = np.maximum(self._enemy_health, 0)
        self._steps += 1
        self._allies_alive &= self._rng.random(self.n_agents) >= P_ALLY_DEATH
        won = not self._enemy_health.any()
        terminated = won or not self._allies_alive.any() or self._steps >= self.episode_limit
        info = {
            "battle_won": won,
            "dead_allies": int((~self._allies_alive).sum()),
            "dead_enemies": int((self._enemy_health == 0).sum()),
        }
        self._roll()
        return float(len(targets)), terminated, info

    def get_obs(self) -> list[np.ndarray]:
        """One observation per agent; zeros for dead agents, as smac gives them."""
        return [o.copy() for o in self._obs]

    def get_state(self) -> np.ndarray:
        """The global state."""
        return self._state.copy()

    def get_avail_actions(self) -> list[list[int]]:
        """Per agent, 1 for each available action."""
        return self._avail.tolist()

    def close(self) -> None:
        """End the "game"."""
        self.closed = True

    def _roll(self) -> None:
        alive = self._allies_alive
        self._obs = self._rng.normal(size=(self.n_agents, self.obs_size)).astype(np.float32)
        self._obs[~alive] = 0.0
        self._state = self._rng.normal(size=self.state_size).astype(np.float32)
        avail = np.zeros((self.n_agents, self.n_actions), dtype=np.int64)
        avail[:, 0] = ~alive
        avail[:, 1] = alive
        avail[:, 2:N_NON_ATTACK_ACTIONS] = (self._rng.random((self.n_agents, 4)) < P_MOVE_AVAILABLE) & alive[:, None]
        in_range = self._rng.random((self.n_agents, self.n_enemies)) < P_ENEMY_IN_RANGE
        avail[:, N_NON_ATTACK_ACTIONS:] = in_range & alive[:, None] & (self._enemy_health > 0)[None, :]
        self._avail = avail


class FakeStarCraft2Env(FakeBattle):
    """``smac.env.StarCraft2Env(map_name=..., seed=...)`` on the maps of :data:`FAKE_TEAMS`."""

    def __init__(self, map_name: str = "8m", seed: int | None = None) -> None:
        super().__init__(*FAKE_TEAMS[map_name], seed)
        self.map_name = map_name


class FakeCapabilityEnvWrapper(FakeBattle):
    """``smacv2.env.StarCraftCapabilityEnvWrapper(**kwargs)``: team sizes come from
    ``capability_config``; like the real wrapper, it writes into the distribution configs."""

    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - SMACV2_PARAMETERS
        if unknown:
            raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
        if kwargs["map_name"] not in SMACV2_GEN_MAPS:
            raise KeyError(kwargs["map_name"])
        config = kwargs["capability_config"]
        for env_key, distribution in config.items():
            if env_key in ("n_units", "n_enemies"):
                continue
            if "env_key" in distribution:
                raise AssertionError("capability_config reused: an earlier wrapper already wrote into it")
            distribution.update(env_key=env_key, n_units=config["n_units"], n_enemies=config["n_enemies"])
        super().__init__(config["n_units"], config["n_enemies"], kwargs.get("seed"))
        self.kwargs = kwargs


def write_fake_packages(root: Path, smac3: bool = False) -> None:
    """Write the fake ``smac`` (SMAC3's stand-in, without ``smac.env``, when ``smac3``) and
    ``smacv2`` packages under ``root``."""
    files = {"smacv2/__init__.py": "", "smacv2/env/__init__.py": _SMACV2_ENV_INIT}
    if smac3:
        files["smac/__init__.py"] = _SMAC3_INIT
    else:
        files.update({"smac/__init__.py": "", "smac/env/__init__.py": _SMAC_ENV_INIT})
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def write_sc2_folder(root: Path, maps: tuple[str, ...] = ALL_MAP_FILES, versions: bool = True) -> Path:
    """A StarCraft II folder: ``Versions/`` (unless not ``versions``) and
    ``Maps/SMAC_Maps/<name>.SC2Map`` for each of ``maps``. Returns ``root``."""
    map_dir = root / "Maps" / "SMAC_Maps"
    map_dir.mkdir(parents=True, exist_ok=True)
    if versions:
        (root / "Versions").mkdir(exist_ok=True)
    for name in maps:
        (map_dir / f"{name}.SC2Map").write_bytes(b"fake map")
    return root


def install_fakes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    packages: bool = True,
    smac3: bool = False,
    versions: bool = True,
    maps: tuple[str, ...] = ALL_MAP_FILES,
) -> Path:
    """Make the fakes what ``import smac`` / ``import smacv2`` and ``SC2PATH`` find for this
    test: the fake packages first on ``sys.path`` (no package at all when not ``packages``),
    no ``smac*`` module cached, ``SC2PATH`` at a fake StarCraft II folder. Returns that folder."""
    for name in [n for n in sys.modules if n.split(".")[0] in ("smac", "smacv2")]:
        monkeypatch.delitem(sys.modules, name)
    if packages:
        site = tmp_path / "site"
        write_fake_packages(site, smac3=smac3)
        monkeypatch.syspath_prepend(str(TESTS_DIR))  # the fake packages import this module
        monkeypatch.syspath_prepend(str(site))
    else:  # hides the packages even where the real ones are installed
        monkeypatch.setitem(sys.modules, "smac", None)
        monkeypatch.setitem(sys.modules, "smacv2", None)
    sc2 = write_sc2_folder(tmp_path / "StarCraftII", maps=maps, versions=versions)
    monkeypatch.setenv("SC2PATH", str(sc2))
    return sc2
