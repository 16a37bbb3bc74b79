"""JaxMARL's SMAX behind HARL's environment contract, with SMAC's action layout.

:class:`SMAXVecEnv` steps all ``n_rollout_threads`` battles as one jitted, vmapped JAX call with
the auto-reset inside it (the batched vector env); :class:`SMAXEnv` is one battle behind the
single-environment contract (``batched_step: False``, for the in-process and subprocess vector
envs). Both run the same compiled functions, so the same seeds give the same battles.

What an agent sees and does, the same as ``--env smac`` wherever SMAX allows:

* actions (SMAC's layout): 0 no-op (only for dead agents), 1 stop, 2-5 move north, south,
  east, west, then one attack per enemy (a Medivac's heal per ally); a move that would carry
  the unit off the map (SMAX kills units touching its edge) is unavailable, as SMAC's pathing
  check makes unpathable moves unavailable;
* observations: SMAX's unit list (every other unit's health, relative position, last action,
  weapon cooldown and type within sight, then the unit's own features); zeros when dead;
* state: EP is SMAX's world state for every agent; FP is, per agent, the world state, the
  agent's observation and its one-hot id (HARL's FP holds the same information with
  duplicated features pruned);
* reward: SMAX's team reward (the enemies' normalised health loss, +1 for a win), the same
  for every agent; ``win_rate`` is 1 for a won episode (every enemy combat unit dead, an ally
  combat unit alive) and 0 otherwise; a battle that reaches SMAC's episode limit with both
  sides alive is a truncation (``bad_transition``).

Compiled functions are cached in this process per map and state type, and on disk across
runs by JAX's persistent compilation cache (``HARL_JAX_CACHE_DIR``, default
``~/.cache/harl/jax``; empty to turn it off).

Length (about 450 lines): one adapter, two faces of it (the batched vector env the runners use
and the single env the contract asks for) sharing its observation, action-mask and reward code.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from typing import Any

# JAX must not take most of a GPU's memory at start-up: torch trains on the same device.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from gymnasium import spaces  # noqa: E402


@contextlib.contextmanager
def _silenced_stdout():
    """Discard what is written to file descriptor 1: jaxmarl announces its optional submodules
    on import, through a ``sys.stdout`` that one of its imports resets to the original."""
    stdout = sys.stdout
    stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            sys.stdout = stdout


with _silenced_stdout():
    from jaxmarl.environments.smax import HeuristicEnemySMAX, Scenario  # noqa: E402

from harl.envs import check_env_args  # noqa: E402
from harl.envs.base import EnvStepResult, MultiAgentEnv, ResetResult, StepResult, check_state_type  # noqa: E402
from harl.envs.smax.maps import AIR_TYPES, HEALER_TYPES, HITS_AIR, UNIT_ID, MapSpec, get_map  # noqa: E402
from harl.envs.smax.medivac import HealerHeuristicEnemySMAX, type_flags  # noqa: E402

logger = logging.getLogger(__name__)
# JAX reports at INFO level every accelerator plugin it does not find (TPU on a CPU machine).
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)

# SMAC's action layout: no-op, stop, north, south, east, west, then one per enemy.
N_NON_ATTACK_ACTIONS = 6
# SMAX's moves are 0 north, 1 east, 2 south, 3 west, 4 stop, then attacks from 5.
_SMAC_TO_SMAX = (4, 4, 0, 2, 1, 3)
_MOVE_DIRECTIONS = ((0.0, 1.0), (0.0, -1.0), (1.0, 0.0), (-1.0, 0.0))  # SMAC's order: N, S, E, W
# Draws of a SMACv2 team before giving up on avoiding an all-exception team (SMACv2 redraws
# until it succeeds; 8 draws fail with probability at most 0.1 ** 8 for one-unit extras).
_TEAM_DRAWS = 8

_logged_notes: set[str] = set()


def _enable_compilation_cache() -> None:
    """Keep compiled SMAX functions on disk across runs, unless the user configured JAX's cache."""
    if jax.config.jax_compilation_cache_dir is not None:
        return
    path = os.environ.get("HARL_JAX_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "harl", "jax"))
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


class _WeightedTeams:
    """SMACv2's weighted_teams unit-type generation as SMAX's ``unit_type_generator``."""

    def __init__(self, spec: MapSpec) -> None:
        generation = spec.team_generation
        assert generation is not None
        self.type_ids = jnp.array([UNIT_ID[name] for name in generation.unit_types], dtype=jnp.uint8)
        self.logits = jnp.log(jnp.asarray(generation.weights, dtype=jnp.float32))
        self.exception = jnp.array([name in generation.exceptions for name in generation.unit_types])
        self.n_allies, self.n_enemies = spec.n_allies, spec.n_enemies

    def _team(self, key: jax.Array, size: int) -> jax.Array:
        draws = jax.random.categorical(key, self.logits, shape=(_TEAM_DRAWS, size))
        allowed = ~jnp.all(self.exception[draws], axis=1)
        return draws[jnp.argmax(allowed)]

    def generate(self, key: jax.Array) -> jax.Array:
        ally_key, extra_key = jax.random.split(key)
        allies = self._team(ally_key, self.n_allies)
        enemies = allies[: self.n_enemies]
        if self.n_enemies > self.n_allies:
            enemies = jnp.concatenate([allies, self._team(extra_key, self.n_enemies - self.n_allies)])
        return self.type_ids[jnp.concatenate([allies, enemies])]


def _strong(tree: Any) -> Any:
    # Arrays that come out of reset and out of step must have identical types (no weak types),
    # or the step function is compiled a second time on its own output.
    return jax.tree.map(lambda x: x.astype(x.dtype), tree)


class _Battle:
    """The per-battle functions (reset, step) in HARL's layout, pure, to be vmapped and jitted."""

    def __init__(self, map_name: str, state_type: str, obs_own_last_action: bool) -> None:
        spec = get_map(map_name)
        self.spec = spec
        self.state_type = state_type
        self.obs_own_last_action = obs_own_last_action
        units = spec.ally_units + spec.enemy_units
        scenario = Scenario(
            unit_types=jnp.array(
                [UNIT_ID[name] for name in units] if units else [0] * (spec.n_allies + spec.n_enemies), dtype=jnp.uint8
            ),
            num_allies=spec.n_allies,
            num_enemies=spec.n_enemies,
            smacv2_position_generation=spec.random_start_positions,
            smacv2_unit_type_generation=spec.team_generation is not None,
        )
        env_cls = HealerHeuristicEnemySMAX if spec.has_healers else HeuristicEnemySMAX
        # SMAX tests its step counter before incrementing it, so max_steps = limit - 1 ends a
        # battle after exactly `episode_limit` steps, as SMAC does
        self.env = env_cls(scenario=scenario, max_steps=spec.episode_limit - 1)
        self.world = self.env._env  # the SMAX world under the heuristic enemy
        if spec.team_generation is not None:
            self.world.unit_type_generator = _WeightedTeams(spec)
        self.n_agents, self.n_enemies = spec.n_allies, spec.n_enemies
        self.episode_limit = spec.episode_limit
        self.n_actions = N_NON_ATTACK_ACTIONS + spec.n_enemies
        # an agent's observation: SMAX's, then with obs_own_last_action its own last action one-hot
        self.obs_size = self.world.obs_size + self.n_actions * obs_own_last_action
        self.world_state_size = self.world.state_size
        self.state_scale, self.cooldown_columns = self._state_scale()
        self.share_size = self.world_state_size + (self.obs_size + self.n_agents if state_type == "FP" else 0)
        self.to_smax = jnp.array(_SMAC_TO_SMAX + tuple(range(5, 5 + spec.n_enemies)), dtype=jnp.int32)
        self.is_healer, self.is_air = type_flags(HEALER_TYPES), type_flags(AIR_TYPES)
        self.hits_air = type_flags(HITS_AIR)
        step_seconds = self.world.time_per_step * self.world.world_steps_per_env_step
        self.move_per_step = self.world.unit_type_velocities * step_seconds
        self.directions = jnp.array(_MOVE_DIRECTIONS)

    # ------------------------------------------------------------------ observation
    def _state_scale(self) -> tuple[jax.Array, jax.Array]:
        """Factors that bring SMAX's world state to SMAC's scale, [0, 1] (:meth:`_world_state`),
        and which entries are weapon cooldowns:
        SMAX writes unit positions in map units (0-32) and weapon cooldowns in seconds, and
        appends the unit type ids as integers, where SMAC's state holds positions relative to
        the map size and normalised cooldowns. Multiplying keeps a dead unit's zeros zero."""
        world = self.world
        units, per_unit = world.num_agents, len(world.own_features)
        unit = np.ones(per_unit, dtype=np.float32)
        unit[1], unit[2] = 1.0 / world.map_width, 1.0 / world.map_height
        unit[3] = 1.0 / float(np.max(np.asarray(world.unit_type_weapon_cooldowns)))
        teams = np.ones(units, dtype=np.float32)
        types = np.full(units, 1.0 / max(1, len(world.unit_type_names) - 1), dtype=np.float32)
        scale = np.concatenate([np.tile(unit, units), teams, types])
        cooldowns = np.concatenate([np.arange(units * per_unit) % per_unit == 3, np.zeros(2 * units, bool)])
        if len(scale) != self.world_state_size:
            raise RuntimeError(
                f"SMAX's world state has {self.world_state_size} entries, not the {len(scale)} "
                "this adapter scales: the installed jaxmarl changed its layout"
            )
        return jnp.asarray(scale), jnp.asarray(cooldowns)

    def _world_state(self, raw: jax.Array) -> jax.Array:
        """SMAX's world state at SMAC's scale. A unit that has not fired keeps counting its
        cooldown down below zero (to minus the battle's length), so it is clipped at 0 first."""
        return jnp.where(self.cooldown_columns, jnp.maximum(raw, 0.0), raw) * self.state_scale

    def _available_actions(self, world) -> jax.Array:
        """``(N, n_actions)`` in SMAC's layout for the allied agents."""
        na = self.n_agents
        types, positions, alive = world.unit_types, world.unit_positions, world.unit_alive
        own_types, own_positions, own_alive = types[:na], positions[:na], alive[:na]
        destination = own_positions[:, None, :] + self.directions[None] * self.move_per_step[own_types][:, None, None]
        size = jnp.array([self.world.map_width, self.world.map_height])
        moves = own_alive[:, None] & jnp.all((destination > 0) & (destination < size), axis=-1)
        reach = self.world.unit_type_attack_ranges[own_types][:, None]
        to_enemy = jnp.linalg.norm(own_positions[:, None] - positions[None, na:], axis=-1)
        targets = (
            own_alive[:, None]
            & alive[None, na:]
            & (to_enemy < reach)
            & (self.hits_air[own_types][:, None] | ~self.is_air[types[na:]][None, :])
        )
        if self.spec.has_healers:
            to_ally = jnp.linalg.norm(own_positions[:, None] - own_positions[None, :], axis=-1)
            heals = (
                own_alive[:, None]
                & own_alive[None, :]
                & ~self.is_air[own_types][None, :]
                & (to_ally <= reach)
                & ~jnp.eye(na, dtype=bool)
            )
            # heal targets use the attack columns, one per enemy: allies beyond them cannot be named
            heals = jnp.pad(heals, ((0, 0), (0, max(0, self.n_enemies - na))))[:, : self.n_enemies]
            targets = jnp.where(self.is_healer[own_types][:, None], heals, targets)
        return jnp.concatenate([~own_alive[:, None], own_alive[:, None], moves, targets], axis=1).astype(jnp.float32)

    def _view(self, obs: dict, state, last_actions: jax.Array | None = None) -> jax.Array:
        """What HARL's runners receive for one battle, flat: obs ``(N, d)``, share_obs
        ``(N, s)`` and available actions ``(N, n_actions)``, concatenated (:meth:`unpack_view`).
        ``last_actions (N,)``: the SMAC-layout actions that led here (``None``: a battle's start),
        appended one-hot to each agent's observation with ``obs_own_last_action``."""
        agent_obs = jnp.stack([obs[agent] for agent in self.env.agents])
        if self.obs_own_last_action:
            previous = (
                jnp.zeros((self.n_agents, self.n_actions))
                if last_actions is None
                else jax.nn.one_hot(last_actions, self.n_actions)
            )
            agent_obs = jnp.concatenate([agent_obs, previous.astype(agent_obs.dtype)], axis=1)
        world_state = jnp.broadcast_to(self._world_state(obs["world_state"]), (self.n_agents, self.world_state_size))
        if self.state_type == "FP":
            share = jnp.concatenate([world_state, agent_obs, jnp.eye(self.n_agents)], axis=1)
        else:
            share = world_state
        return jnp.concatenate([agent_obs.ravel(), share.ravel(), self._available_actions(state.state).ravel()])

    @property
    def view_size(self) -> int:
        """Length of one flat view."""
        return self.n_agents * (self.obs_size + self.share_size + self.n_actions)

    def unpack_view(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Views into ``flat (E, view_size)``: obs ``(E, N, d)``, share_obs ``(E, N, s)`` and
        available actions ``(E, N, n_actions)``; nothing is copied."""
        n, e = self.n_agents, len(flat)
        obs_end = n * self.obs_size
        share_end = obs_end + n * self.share_size
        return (
            flat[:, :obs_end].reshape(e, n, self.obs_size),
            flat[:, obs_end:share_end].reshape(e, n, self.share_size),
            flat[:, share_end:].reshape(e, n, self.n_actions),
        )

    def _sides_left(self, world) -> tuple[jax.Array, jax.Array]:
        combat = world.unit_alive & ~self.is_healer[world.unit_types]
        return jnp.any(combat[: self.n_agents]), jnp.any(combat[self.n_agents :])

    # ------------------------------------------------------------------ transitions
    def reset(self, key: jax.Array) -> tuple[jax.Array, Any, jax.Array]:
        """Start a battle; returns the advanced key, the state and its flat view."""
        key, reset_key = jax.random.split(key)
        obs, state = self.env.reset(reset_key)
        return _strong((key, state, self._view(obs, state)))

    def step(self, key: jax.Array, state: Any, actions: jax.Array) -> tuple:
        """One step with SMAC-layout actions ``(N,)``, auto-resetting a finished battle.

        Returns the advanced key, the next state and one flat float32 array (one transfer to
        the host per step; :meth:`unpack_step`): the next view (of the new battle where one
        ended), the view after the step (the final one where one ended), the team reward, the
        per-agent deaths, and the episode's done, truncated and won flags.
        """
        key, step_key, reset_key = jax.random.split(key, 3)
        smax_actions = self.to_smax[actions]
        obs, stepped, rewards, dones, _ = self.env.step_env(
            step_key, state, {agent: smax_actions[i] for i, agent in enumerate(self.env.agents)}
        )
        done = dones["__all__"]
        after = self._view(obs, stepped, actions)
        allies_left, enemies_left = self._sides_left(stepped.state)
        reset_obs, reset_state = self.env.reset(reset_key)
        choose = lambda new, old: jnp.where(done, new, old)  # noqa: E731
        next_state = jax.tree.map(choose, reset_state, stepped)
        next_view = choose(self._view(reset_obs, reset_state), after)
        dead = ~stepped.state.unit_alive[: self.n_agents]
        flags = jnp.stack([done, done & allies_left & enemies_left, allies_left & ~enemies_left])
        packed = jnp.concatenate([next_view, after, rewards[self.env.agents[0]][None], dead, flags]).astype(jnp.float32)
        return _strong((key, next_state, packed))

    def unpack_step(self, flat: np.ndarray) -> tuple:
        """Views into ``flat (E, ...)`` from :meth:`step`: the next and the final views (each
        as :meth:`unpack_view`), rewards ``(E,)``, deaths ``(E, N)`` and the done, truncated and
        won flags ``(E,)``."""
        v, n = self.view_size, self.n_agents
        flags = flat[:, 2 * v + 1 + n :] > 0.5
        return (
            self.unpack_view(flat[:, :v]),
            self.unpack_view(flat[:, v : 2 * v]),
            flat[:, 2 * v],
            flat[:, 2 * v + 1 : 2 * v + 1 + n] > 0.5,
            flags[:, 0],
            flags[:, 1],
            flags[:, 2],
        )


@functools.lru_cache(maxsize=None)
def _compiled(map_name: str, state_type: str, obs_own_last_action: bool) -> tuple[_Battle, Any, Any]:
    """The battle and its batched reset and step, built once per process and map."""
    _enable_compilation_cache()
    battle = _Battle(map_name, state_type, obs_own_last_action)
    return battle, jax.jit(jax.vmap(battle.reset)), jax.jit(jax.vmap(battle.step))


def _keys(seeds: np.ndarray) -> jax.Array:
    return jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, dtype=jnp.uint32))


class SMAXVecEnv:
    """``n_envs`` SMAX battles stepped together: one jitted call per vectorised step.

    Implements the vectorised-environment API of ``docs/ARCHITECTURE.md``. Battle ``k`` is
    seeded with ``base_seed + k`` at the first reset; later resets continue its random stream.
    """

    def __init__(self, env_args: dict[str, Any], n_envs: int, base_seed: int) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be at least 1, got {n_envs}")
        args = check_env_args("smax", env_args)
        self._battle, self._reset, self._step = _compiled(
            args["map_name"], args["state_type"], args["obs_own_last_action"]
        )
        battle = self._battle
        self.n_envs = n_envs
        self.n_agents = battle.n_agents
        self.observation_spaces = [spaces.Box(-np.inf, np.inf, (battle.obs_size,), np.float32)] * battle.n_agents
        self.share_observation_spaces = [
            spaces.Box(-np.inf, np.inf, (battle.share_size,), np.float32)
        ] * battle.n_agents
        self.action_spaces = [spaces.Discrete(battle.n_actions)] * battle.n_agents
        self.episode_metric_names = ("win_rate",)
        self.episode_limit = battle.episode_limit
        self.seed(base_seed)

    def seed(self, base_seed: int) -> None:
        """Restart every battle's random stream: battle ``k`` from ``base_seed + k``."""
        self._key = _keys(base_seed + np.arange(self.n_envs))
        self._state = None

    def reset(self) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
        """Start a battle in every environment: obs per agent (E, d), share_obs (E, N, s),
        available actions per agent (E, n_actions)."""
        self._key, self._state, flat = self._reset(self._key)
        obs, share_obs, avail = self._battle.unpack_view(np.array(flat))
        return self._per_agent(obs), share_obs, self._per_agent(avail)

    def step(self, actions: list[np.ndarray]) -> StepResult:
        """Step every battle with one ``(E, 1)`` action array per agent (SMAC's layout)."""
        if self._state is None:
            raise RuntimeError("SMAXVecEnv.step() before reset()")
        if len(actions) != self.n_agents:
            raise ValueError(f"step() got actions for {len(actions)} agents but the map has {self.n_agents}")
        joint = np.concatenate([np.asarray(a).reshape(self.n_envs, 1) for a in actions], axis=1).astype(np.int32)
        self._key, self._state, flat = self._step(self._key, self._state, joint)
        # one copy of the whole batch: JAX hands out read-only buffers, torch wants writable ones
        (obs, share_obs, avail), final, reward, dead, done, truncated, won = self._battle.unpack_step(np.array(flat))
        infos = [{"bad_transition": bool(t), "episode_done": bool(d)} for t, d in zip(truncated, done)]
        for e in np.flatnonzero(done):
            infos[e].update(
                final_obs=list(final[0][e]),
                final_share_obs=final[1][e],
                final_available_actions=list(final[2][e]),
                episode_metrics={"win_rate": float(won[e])},
            )
        return StepResult(
            self._per_agent(obs),
            share_obs,
            np.repeat(reward[:, None], self.n_agents, axis=1),
            dead | done[:, None],
            self._per_agent(avail),
            infos,
        )

    def close(self) -> None:
        """Nothing to release: the compiled functions stay cached for the next vector."""

    def __enter__(self) -> SMAXVecEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _per_agent(self, x: np.ndarray) -> list[np.ndarray]:
        # views into the one host array of the batch: no copy per environment or agent
        return [x[:, i] for i in range(self.n_agents)]


class SMAXEnv(MultiAgentEnv):
    """One SMAX battle behind the single-environment contract (``batched_step: False``).

    It runs the batched functions with one battle, so a vector of these, stepped one by one,
    plays exactly the battles :class:`SMAXVecEnv` plays for the same seeds.
    """

    episode_metric_names = ("win_rate",)
    compiles_on_first_steps = True  # jax.jit of the batched reset and step

    def __init__(self, env_args: dict[str, Any]) -> None:
        self._vec = SMAXVecEnv(env_args, 1, 0)
        self.n_agents = self._vec.n_agents
        self.episode_limit = self._vec.episode_limit
        self.observation_spaces = self._vec.observation_spaces
        self.share_observation_spaces = self._vec.share_observation_spaces
        self.action_spaces = self._vec.action_spaces
        self._next_battle: ResetResult | None = None  # started inside the step that ended the last

    @staticmethod
    def check_args(args: dict[str, Any]) -> None:
        """Raise ``ValueError`` for unsupported values; log once when the map approximates SC2."""
        spec = get_map(args["map_name"])
        check_state_type(args["state_type"], "smax: state_type")
        for key in ("batched_step", "obs_own_last_action"):
            if not isinstance(args[key], bool):
                raise ValueError(f"smax: {key} must be True or False, got {args[key]!r}")
        if spec.approximation and spec.name not in _logged_notes:
            _logged_notes.add(spec.name)
            logger.warning("smax: %s.", spec.approximation)

    @classmethod
    def make_batched_vec_env(cls, env_args: dict[str, Any], n_envs: int, base_seed: int) -> SMAXVecEnv | None:
        """The batched vector env unless ``batched_step`` is False."""
        return SMAXVecEnv(env_args, n_envs, base_seed) if env_args["batched_step"] else None

    def reset(self, seed: int | None = None) -> ResetResult:
        """Start a battle; ``seed=None`` continues the random stream."""
        if seed is not None:
            self._vec.seed(seed)
            self._next_battle = None
        elif self._next_battle is not None:
            first, self._next_battle = self._next_battle, None
            return first
        obs, share_obs, avail = self._vec.reset()
        return [o[0] for o in obs], share_obs[0], [a[0] for a in avail]

    def step(self, actions: list[np.ndarray]) -> EnvStepResult:
        """One step; where the battle ended the next one has already started (see reset)."""
        result = self._vec.step([np.asarray(a).reshape(1, 1) for a in actions])
        info = result.infos[0]
        obs, share_obs, avail = (
            [o[0] for o in result.obs],
            result.share_obs[0],
            [a[0] for a in result.available_actions],
        )
        if info["episode_done"]:
            self._next_battle = (obs, share_obs, avail)
            obs, share_obs, avail = info["final_obs"], info["final_share_obs"], info["final_available_actions"]
        return obs, share_obs, result.rewards[0], result.dones[0], info, avail
