"""A healing, flying unit for SMAX (which has none), so that MMM, MMM2 and SMACv2's terran maps
can be played without StarCraft II.

:class:`HealerSMAX` is SMAX with two StarCraft II rules added:

* healers (the Medivac) turn their "attack" actions into heals: attack action ``k`` of a healer
  restores health to the ``k``-th unit of its *own* team (team order), when that unit is alive,
  on the ground and within heal range; a heal never exceeds the unit's maximum health and a
  healer never deals damage;
* air units (the Medivac) do not collide with ground units, and units whose weapons cannot
  target air (marauder, zealot, zergling) cannot attack them.

:class:`HealerHeuristicEnemySMAX` is SMAX's heuristic enemy on that world, with a Medivac
heuristic for the enemy side (heal the most injured teammate in range, else follow the team)
and ground-only enemies that do not try to shoot at air units. As in SMAC, a side whose only
units left are healers has lost.

Medivac values are StarCraft II's (Legacy of the Void): 150 health, speed 3.5, heals 12.6
health per second, heal range 4, sight 11, radius 0.75. Energy (one point per 3 health healed)
is not modelled, so a Medivac never runs dry; armour is not modelled for any SMAX unit.
"""

from __future__ import annotations

import inspect
from functools import partial

import jax
import jax.numpy as jnp
from jaxmarl.environments.smax import SMAX, HeuristicEnemySMAX
from jaxmarl.environments.smax.heuristic_enemy import create_heuristic_policy

from harl.envs.smax.maps import AIR_TYPES, HEALER_TYPES, HITS_AIR, UNIT_TYPES

# StarCraft II's Medivac (Liquipedia, Legacy of the Void, "Faster" game speed units).
MEDIVAC = {
    "velocity": 3.5,
    "attack": 0.0,  # never damages
    "attack_range": 4.0,  # heal range
    "sight_range": 11.0,
    "radius": 0.75,
    "health": 150.0,
    "weapon_cooldown": 1.0,  # unused: heals have no cooldown; kept positive for SMAX's features
    "shorthand": "V",
}
MEDIVAC_HEAL_PER_SECOND = 12.6

# SMAX constructor arguments of the per-type unit tables, and the Medivac's entry in each.
_TABLE_KEYS = {
    "unit_type_velocities": "velocity",
    "unit_type_attacks": "attack",
    "unit_type_attack_ranges": "attack_range",
    "unit_type_sight_ranges": "sight_range",
    "unit_type_radiuses": "radius",
    "unit_type_health": "health",
    "unit_type_weapon_cooldowns": "weapon_cooldown",
}


def unit_table_kwargs(with_medivac: bool) -> dict:
    """SMAX constructor arguments for its six unit types, plus the Medivac when asked.

    SMAX's own values are read from its constructor defaults, so they stay SMAX's.
    """
    if not with_medivac:
        return {}
    defaults = {name: p.default for name, p in inspect.signature(SMAX.__init__).parameters.items()}
    kwargs = {key: jnp.append(jnp.asarray(defaults[key]), MEDIVAC[field]) for key, field in _TABLE_KEYS.items()}
    kwargs["unit_type_names"] = list(defaults["unit_type_names"]) + ["medivac"]
    kwargs["unit_type_shorthands"] = list(defaults["unit_type_shorthands"]) + [MEDIVAC["shorthand"]]
    assert tuple(kwargs["unit_type_names"]) == UNIT_TYPES, "SMAX's unit types changed"
    return kwargs


def type_flags(names: frozenset[str]) -> jnp.ndarray:
    """Per unit type id (``UNIT_TYPES`` order): whether the type is in ``names``."""
    return jnp.array([name in names for name in UNIT_TYPES])


class HealerSMAX(SMAX):
    """SMAX whose Medivacs heal their own team and fly (see the module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs, **unit_table_kwargs(with_medivac=True))
        self.is_healer = type_flags(HEALER_TYPES)
        self.is_air = type_flags(AIR_TYPES)
        self.hits_air = type_flags(HITS_AIR)
        self.heal_per_world_step = MEDIVAC_HEAL_PER_SECOND * self.time_per_step

    def _attack_targets(self, attack: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Unit index of each unit's attack target (SMAX's convention: allies count enemies
        forwards, enemies count allies backwards) and of its heal target (own team, forwards)."""
        idx = jnp.arange(self.num_agents)
        k = attack - self.num_movement_actions
        is_ally = idx < self.num_allies
        enemy_target = jnp.where(is_ally, self.num_allies + k, self.num_allies - 1 - k)
        own_target = jnp.where(is_ally, k, self.num_allies + k)
        clip = partial(jnp.clip, min=0, max=self.num_agents - 1)
        return clip(enemy_target), clip(own_target)

    @partial(jax.jit, static_argnums=(0,))
    def _world_step(self, key, state, actions):
        movement, attack = actions
        types = state.unit_types
        healer = self.is_healer[types]
        attacking = attack >= self.num_movement_actions
        enemy_target, own_target = self._attack_targets(attack)
        # a ground-only weapon cannot hit an air unit
        blocked = attacking & ~self.hits_air[types] & self.is_air[types[enemy_target]]
        distance = jnp.linalg.norm(state.unit_positions - state.unit_positions[own_target], axis=-1)
        heals = (
            healer
            & attacking
            & state.unit_alive
            & state.unit_alive[own_target]
            & ~self.is_air[types[own_target]]
            & (state.unit_teams == state.unit_teams[own_target])
            & (own_target != jnp.arange(self.num_agents))
            & (distance <= self.unit_type_attack_ranges[types])
        )
        state = super()._world_step(key, state, (movement, jnp.where(healer | blocked, 0, attack)))
        healed = state.unit_health.at[own_target].add(jnp.where(heals, self.heal_per_world_step, 0.0))
        healed = jnp.minimum(healed, self.unit_type_health[types])
        # a unit killed in this world step stays dead
        return state.replace(unit_health=jnp.where(state.unit_health > 0, healed, state.unit_health))

    def _push_units_away(self, state, firmness: float = 1.0):
        # SMAX's collision push, restricted to pairs that are both on the ground or both in the air
        air = self.is_air[state.unit_types]
        pairs = state.unit_alive[:, None] & state.unit_alive[None, :] & (air[:, None] == air[None, :])
        delta = state.unit_positions[:, None] - state.unit_positions[None, :]
        distance = jnp.linalg.norm(delta, axis=-1) + jnp.identity(self.num_agents) + 1e-6
        radius = self.unit_type_radiuses[state.unit_types]
        overlap = jnp.where(pairs, jax.nn.relu((radius[:, None] + radius[None, :]) / distance - 1.0), 0.0)
        pushed = state.unit_positions + firmness * jnp.sum(delta * overlap[..., None], axis=1) / 2
        return state.replace(unit_positions=jnp.where(state.unit_alive[:, None], pushed, state.unit_positions))

    def _combat_units_left(self, state) -> tuple[jax.Array, jax.Array]:
        """Whether each side still has a unit that is not a healer (SMAC: healers alone lose)."""
        combat = state.unit_alive & ~self.is_healer[state.unit_types]
        return jnp.any(combat[: self.num_allies]), jnp.any(combat[self.num_allies :])

    @partial(jax.jit, static_argnums=(0,))
    def is_terminal(self, state):
        allies_left, enemies_left = self._combat_units_left(state)
        return ~allies_left | ~enemies_left | (state.step >= self.max_steps)

    @partial(jax.jit, static_argnums=(0,))
    def compute_reward(self, state, health_before, health_after):
        # SMAX's reward (the other side's normalised health loss, plus the win bonus), except
        # that healing the other side never pays: its net health loss is clipped at zero
        change = (health_after - health_before) / self.unit_type_health[state.unit_types]
        allies_left, enemies_left = self._combat_units_left(state)
        loss_of_enemies = jnp.maximum(-jnp.sum(change[self.num_allies :]), 0.0) / self.num_enemies
        loss_of_allies = jnp.maximum(-jnp.sum(change[: self.num_allies]), 0.0) / self.num_allies
        ally_reward = loss_of_enemies + jnp.where(~enemies_left & allies_left, self.won_battle_bonus, 0.0)
        enemy_reward = loss_of_allies + jnp.where(~allies_left & enemies_left, self.won_battle_bonus, 0.0)
        return {agent: ally_reward if i < self.num_allies else enemy_reward for i, agent in enumerate(self.agents)}


class HealerHeuristicEnemySMAX(HeuristicEnemySMAX):
    """SMAX's heuristic enemy on :class:`HealerSMAX`, with a heal heuristic for enemy Medivacs."""

    def __init__(self, **env_kwargs) -> None:
        super().__init__(**env_kwargs)
        # SMAX's constructor builds a plain SMAX world; the healing one replaces it
        self._env = HealerSMAX(**env_kwargs)
        self.observation_spaces = {agent: self._env.observation_spaces[agent] for agent in self.agents}
        self.action_spaces = {agent: self._env.action_spaces[agent] for agent in self.agents}
        self.heuristic_policy = create_heuristic_policy(
            self._env, 1, shoot=self.enemy_shoots, attack_mode=self.attack_mode
        )

    def _enemy_observations(self, state) -> jax.Array:
        """The enemies' observations, with air units hidden from units that cannot shoot them,
        so the heuristic never chases a target it cannot hit."""
        env = self._env
        obs = env.get_obs_unit_list(state)
        obs = jnp.stack([obs[agent] for agent in self.enemy_agents])
        n_features = len(env.unit_features)
        start = (self.num_enemies - 1) * n_features  # an enemy sees its teammates first
        # block k of the other team is ally num_allies - 1 - k (SMAX's reversed order)
        air_ally = env.is_air[state.unit_types[: self.num_allies][::-1]]
        ground_only = ~env.hits_air[state.unit_types[self.num_allies :]]
        hide = ground_only[:, None] & air_ally[None, :]
        other = obs[:, start : start + self.num_allies * n_features].reshape(
            self.num_enemies, self.num_allies, n_features
        )
        other = jnp.where(hide[..., None], 0.0, other).reshape(self.num_enemies, -1)
        return obs.at[:, start : start + self.num_allies * n_features].set(other)

    def _healer_actions(self, state) -> jax.Array:
        """Enemy Medivac actions: heal the teammate with the lowest health share in range, else
        move towards the centre of the team's ground units (SMAX's discrete action layout)."""
        env = self._env
        team = slice(self.num_allies, self.num_allies + self.num_enemies)
        types, positions, alive = state.unit_types[team], state.unit_positions[team], state.unit_alive[team]
        health_share = state.unit_health[team] / env.unit_type_health[types]
        ground = alive & ~env.is_air[types]

        def act(i):
            distance = jnp.linalg.norm(positions - positions[i], axis=-1)
            in_range = ground & (health_share < 1.0) & (distance <= env.unit_type_attack_ranges[types[i]])
            target = jnp.argmin(jnp.where(in_range, health_share, jnp.inf))
            centre = jnp.sum(positions * ground[:, None], axis=0) / jnp.maximum(jnp.sum(ground), 1)
            heading = centre - positions[i]
            # SMAX moves: 0 north, 1 east, 2 south, 3 west; 4 stop
            directions = jnp.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])
            move = jnp.where(
                jnp.linalg.norm(heading) > 1.0, jnp.argmax(directions @ heading), env.num_movement_actions - 1
            )
            return jnp.where(jnp.any(in_range), env.num_movement_actions + target, move)

        return jax.vmap(act)(jnp.arange(self.num_enemies))

    @partial(jax.jit, static_argnums=(0, 4))
    def step_env(self, key, state, actions, get_state_sequence=False):
        env = self._env
        world = state.state
        key, action_key = jax.random.split(key)
        enemy_keys = jax.random.split(action_key, self.num_enemies)
        enemy_actions, policy_state = jax.vmap(self.heuristic_policy)(
            enemy_keys, state.enemy_policy_state, self._enemy_observations(world)
        )
        enemy_healer = env.is_healer[world.unit_types[self.num_allies :]]
        enemy_actions = jnp.where(enemy_healer, self._healer_actions(world), enemy_actions)
        ally_actions = jnp.array([actions[agent] for agent in self.agents])
        decoded = env._decode_discrete_actions(jnp.concatenate([ally_actions, enemy_actions]))
        if get_state_sequence:
            return env.step_env_no_decode(key, world, decoded, get_state_sequence=True)
        obs, world, rewards, dones, infos = env.step_env_no_decode(key, world, decoded)
        obs = {agent: obs[agent] for agent in self.agents + ["world_state"]}
        rewards = {agent: rewards[agent] for agent in self.agents}
        dones = {**{agent: dones[agent] for agent in self.agents}, "__all__": dones["__all__"]}
        return obs, state.replace(state=world, enemy_policy_state=policy_state), rewards, dones, infos
