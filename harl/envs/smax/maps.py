"""The SMAX maps under HARL's SMAC and SMACv2 names, as data: unit types, team sizes, episode
limits, and for SMACv2-style maps the team and start-position generation.

Unit types are SMAX's six (marine, marauder, stalker, zealot, zergling, hydralisk) plus the
Medivac of :mod:`harl.envs.smax.medivac`. A map that needs a unit SMAX lacks either adds it
(Medivac) or leaves it out and says so in ``approximation`` (colossus, baneling); maps whose
SC2 original depends on terrain or on units that cannot be added (corridor, 2s_vs_1sc,
1c3s5z, bane_vs_bane, so_many_baneling, 2c_vs_64zg) are not offered.
"""

from __future__ import annotations

from dataclasses import dataclass

# SMAX's unit types in SMAX's order, then the healer this package adds.
UNIT_TYPES = ("marine", "marauder", "stalker", "zealot", "zergling", "hydralisk", "medivac")
UNIT_ID = {name: i for i, name in enumerate(UNIT_TYPES)}
HEALER_TYPES = frozenset({"medivac"})
# StarCraft II facts: air units (flying, no ground collisions) and who can shoot at them.
AIR_TYPES = frozenset({"medivac"})
HITS_AIR = frozenset({"marine", "stalker", "hydralisk", "medivac"})

# SMACv2's 10gen maps end after 200 steps (smacv2 map registry); SMAX's own generated maps
# use the same limit here.
SMACV2_EPISODE_LIMIT = 200


@dataclass(frozen=True)
class TeamGeneration:
    """SMACv2's ``weighted_teams``: each ally unit drawn i.i.d. from ``weights`` over
    ``unit_types``, redrawn when every unit is of an ``exception`` type; the enemy team copies
    the ally team and draws its extra units the same way."""

    unit_types: tuple[str, ...]
    weights: tuple[float, ...]
    exceptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class MapSpec:
    """One battle: the units of each side (fixed maps) or their generation (SMACv2 style)."""

    name: str
    n_allies: int
    n_enemies: int
    episode_limit: int
    # fixed maps: unit type names in agent order (SMAC sorts its agents by unit type id)
    ally_units: tuple[str, ...] = ()
    enemy_units: tuple[str, ...] = ()
    # SMACv2-style maps: per-episode teams, and surrounded-or-reflected start positions
    team_generation: TeamGeneration | None = None
    random_start_positions: bool = False
    # non-empty when the battle only approximates the StarCraft II map of the same name
    approximation: str = ""

    @property
    def unit_types(self) -> tuple[str, ...]:
        """Every unit type that can appear on the map."""
        if self.team_generation is not None:
            return self.team_generation.unit_types
        return tuple(dict.fromkeys(self.ally_units + self.enemy_units))

    @property
    def has_healers(self) -> bool:
        """Whether a Medivac can appear (then the healing world step is used)."""
        return bool(HEALER_TYPES & set(self.unit_types))


def _fixed(name: str, limit: int, allies: dict[str, int], enemies: dict[str, int], note: str = "") -> MapSpec:
    ally_units = tuple(t for t, n in allies.items() for _ in range(n))
    enemy_units = tuple(t for t, n in enemies.items() for _ in range(n))
    return MapSpec(name, len(ally_units), len(enemy_units), limit, ally_units, enemy_units, approximation=note)


_MEDIVAC_NOTE = (
    "SMAX has no Medivac; this package adds one (heals its own team's ground units in range "
    "at StarCraft II's 12.6 HP/s, never damages, flies; energy is not modelled), so {name} is "
    "an approximation of the StarCraft II map"
)


def _mirror(name: str, limit: int, units: dict[str, int], note: str = "") -> MapSpec:
    return _fixed(name, limit, units, units, note)


# Episode limits are SMAC's per map (smac map registry). Agent order follows SMAC's sort by
# unit type id: stalkers before zealots, marauders before marines before the Medivac.
_FIXED_MAPS = [
    _mirror("3m", 60, {"marine": 3}),
    _mirror("8m", 120, {"marine": 8}),
    _mirror("25m", 150, {"marine": 25}),
    _fixed("5m_vs_6m", 70, {"marine": 5}, {"marine": 6}),
    _fixed("8m_vs_9m", 120, {"marine": 8}, {"marine": 9}),
    _fixed("10m_vs_11m", 150, {"marine": 10}, {"marine": 11}),
    _fixed("27m_vs_30m", 180, {"marine": 27}, {"marine": 30}),
    _fixed("2m_vs_1z", 150, {"marine": 2}, {"zealot": 1}),
    _mirror("2s3z", 120, {"stalker": 2, "zealot": 3}),
    _mirror("3s5z", 150, {"stalker": 3, "zealot": 5}),
    _fixed("3s5z_vs_3s6z", 170, {"stalker": 3, "zealot": 5}, {"stalker": 3, "zealot": 6}),
    _fixed("3s_vs_3z", 150, {"stalker": 3}, {"zealot": 3}),
    _fixed("3s_vs_4z", 200, {"stalker": 3}, {"zealot": 4}),
    _fixed("3s_vs_5z", 250, {"stalker": 3}, {"zealot": 5}),
    _fixed("6h_vs_8z", 150, {"hydralisk": 6}, {"zealot": 8}),
    _mirror("MMM", 150, {"marauder": 2, "marine": 7, "medivac": 1}, _MEDIVAC_NOTE.format(name="MMM")),
    _fixed(
        "MMM2",
        180,
        {"marauder": 2, "marine": 7, "medivac": 1},
        {"marauder": 3, "marine": 8, "medivac": 1},
        _MEDIVAC_NOTE.format(name="MMM2"),
    ),
]

# HARL's SMACv2 map configs (weighted_teams): unit types, weights and exception types per race;
# the types SMAX cannot play are dropped and the remaining weights renormalised.
_RACES: dict[str, tuple[TeamGeneration, str]] = {
    "protoss": (
        TeamGeneration(("stalker", "zealot"), (0.5, 0.5)),
        "SMACv2 draws colossi with weight 0.1; SMAX has no colossus, so stalkers and zealots share it",
    ),
    "terran": (
        TeamGeneration(("marine", "marauder", "medivac"), (0.45, 0.45, 0.1), ("medivac",)),
        _MEDIVAC_NOTE.format(name="this SMACv2 map"),
    ),
    "zerg": (
        TeamGeneration(("zergling", "hydralisk"), (0.5, 0.5)),
        "SMACv2 draws banelings with weight 0.1; SMAX has no baneling, so zerglings and hydralisks share it",
    ),
}
_SMACV2_SIZES = ((5, 5), (10, 10), (10, 11), (20, 20), (20, 23))

_GENERATED_MAPS = [
    MapSpec(
        f"{race}_{n}_vs_{m}",
        n,
        m,
        SMACV2_EPISODE_LIMIT,
        team_generation=gen,
        random_start_positions=True,
        approximation=note,
    )
    for race, (gen, note) in _RACES.items()
    for n, m in _SMACV2_SIZES
] + [
    # SMAX's own SMACv2-style maps: any of SMAX's six unit types, uniformly
    MapSpec(
        f"smacv2_{n}_units",
        n,
        n,
        SMACV2_EPISODE_LIMIT,
        team_generation=TeamGeneration(UNIT_TYPES[:6], (1 / 6,) * 6),
        random_start_positions=True,
    )
    for n in (5, 10, 20)
]

MAPS: dict[str, MapSpec] = {spec.name: spec for spec in _FIXED_MAPS + _GENERATED_MAPS}
"""Every map ``--env smax`` plays, by name."""

SMAC_MAP_NAMES = tuple(spec.name for spec in _FIXED_MAPS)
"""The maps that carry a SMAC (StarCraft II) map's name."""


def get_map(name: str) -> MapSpec:
    """The map called ``name``; ``ValueError`` listing the maps when there is none."""
    if name not in MAPS:
        raise ValueError(
            f"smax: unknown map_name {name!r}; SMAX maps: {', '.join(MAPS)} (SMAX cannot play "
            "corridor, 2s_vs_1sc, 1c3s5z, bane_vs_bane, so_many_baneling or 2c_vs_64zg: they need "
            "terrain or units SMAX lacks)"
        )
    return MAPS[name]
