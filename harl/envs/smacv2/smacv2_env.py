"""SMACv2 through oxwhirl's ``smacv2`` capability wrapper (``--env smacv2``).

Agents see and do what they do under ``--env smac`` (:mod:`harl.envs.smac.smac_env`); only the
package environment differs. The maps are HARL's 15 published SMACv2 configurations, kept here
as data: per race, the ``10gen_<race>`` map with SMACv2's weighted unit-type draws and
surrounded-or-reflected start positions, at ``n`` allies against ``m`` enemies.
"""

from __future__ import annotations

from typing import Any

from harl.envs.smac.smac_env import SMACEnv, StarCraftRequirements, import_package_env

# HARL's team generation per race: unit types, their weights, and the types a team may not
# consist of alone.
_TEAMS: dict[str, dict[str, tuple[Any, ...]]] = {
    "protoss": {"unit_types": ("stalker", "zealot", "colossus"), "weights": (0.45, 0.45, 0.1)},
    "terran": {
        "unit_types": ("marine", "marauder", "medivac"),
        "weights": (0.45, 0.45, 0.1),
        "exception_unit_types": ("medivac",),
    },
    "zerg": {
        "unit_types": ("zergling", "baneling", "hydralisk"),
        "weights": (0.45, 0.1, 0.45),
        "exception_unit_types": ("baneling",),
    },
}
# (allies, enemies) of HARL's maps
_SIZES = ((5, 5), (10, 10), (10, 11), (20, 20), (20, 23))

SMACV2_MAPS: tuple[str, ...] = tuple(f"{race}_{n}_vs_{m}" for race in _TEAMS for n, m in _SIZES)
"""HARL's SMACv2 map names, ``<race>_<allies>_vs_<enemies>``."""

# The keyword arguments every HARL SMACv2 map gives the wrapper, besides its map and capabilities.
_COMMON: dict[str, Any] = {
    "continuing_episode": False,
    "difficulty": "7",
    "game_version": None,
    "move_amount": 2,
    "obs_all_health": True,
    "obs_instead_of_state": False,
    "obs_last_action": False,
    "obs_own_health": True,
    "obs_pathing_grid": False,
    "obs_terrain_height": False,
    "obs_timestep_number": False,
    "reward_death_value": 10,
    "reward_defeat": 0,
    "reward_negative_scale": 0.5,
    "reward_only_positive": True,
    "reward_scale": True,
    "reward_scale_rate": 20,
    "reward_sparse": False,
    "reward_win": 200,
    "replay_dir": "",
    "replay_prefix": "",
    "conic_fov": False,
    "use_unit_ranges": True,
    "min_attack_range": 2,
    "obs_own_pos": True,
    "num_fov_actions": 12,
    "state_last_action": True,
    "state_timestep_number": False,
    "step_mul": 8,
    "heuristic_ai": False,
    "debug": False,
}
_START_POSITIONS: dict[str, Any] = {"dist_type": "surrounded_and_reflect", "p": 0.5, "map_x": 32, "map_y": 32}


def map_config(map_name: str) -> dict[str, Any]:
    """The wrapper's keyword arguments (all but ``seed``) for one of :data:`SMACV2_MAPS`.

    Every call builds new dicts and lists: the wrapper writes into its ``capability_config``.
    """
    race, sizes = map_name.split("_", 1)
    n_units, n_enemies = (int(size) for size in sizes.split("_vs_"))
    team_gen = {
        "dist_type": "weighted_teams",
        **{key: list(values) for key, values in _TEAMS[race].items()},
        "observe": True,
    }
    return {
        **_COMMON,
        "map_name": f"10gen_{race}",
        "capability_config": {
            "n_units": n_units,
            "n_enemies": n_enemies,
            "team_gen": team_gen,
            "start_positions": dict(_START_POSITIONS),
        },
    }


class SMACv2Env(SMACEnv):
    """One SMACv2 battle: new unit types and start positions every episode (see the module
    docstring); spaces, masks, rewards, dones and ``win_rate`` as in :class:`SMACEnv`."""

    requirements = StarCraftRequirements(
        env_name="smacv2",
        package="smacv2",
        title="SMACv2",
        impostor="an unrelated package of the same name",
        # every 10gen map is played on this one flat map
        map_file="32x32_flat.SC2Map",
        maps_source=(
            "the SMAC_Maps.zip of the smacv2 repository (https://github.com/oxwhirl/smacv2, "
            'release "maps": https://github.com/oxwhirl/smacv2/releases/tag/maps)'
        ),
    )
    map_names = SMACV2_MAPS

    def _make_package_env(self, seed: int | None) -> Any:
        """The capability wrapper for ``self.map_name``; the game starts at its first
        ``reset()``, which is when ``seed`` is used."""
        wrapper_class = import_package_env(self.requirements, "StarCraftCapabilityEnvWrapper")
        return wrapper_class(seed=seed, **map_config(self.map_name))
