"""SMAX behind HARL's contract: SMAC's action layout, masks, the Medivac, episode ends, batched
stepping equal to one-by-one stepping, and one compilation per shape."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jaxmarl")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from harl.envs import check_env_args, make_train_env  # noqa: E402
from harl.envs.smax.maps import MAPS, UNIT_ID  # noqa: E402
from harl.envs.smax.smax_env import SMAXVecEnv, _compiled, _keys, _WeightedTeams  # noqa: E402

# SMAC's action layout
NO_OP, STOP, NORTH, SOUTH, EAST, WEST, FIRST_TARGET = range(7)


def random_valid_actions(avail: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """One uniformly random available action per agent and environment, ``(E, 1)`` each."""
    return [np.where(a > 0, rng.random(a.shape), -1.0).argmax(axis=1)[:, None] for a in avail]


def battle_state(map_name: str, seed: int = 0):
    """A fresh battle of ``map_name``: the battle object, its key and state (one environment)."""
    battle, reset, _ = _compiled(map_name, "EP", False)
    key, state, _ = battle.reset(jax.random.PRNGKey(seed))
    return battle, key, state


def step_once(battle, key, state, actions):
    """One step of one battle: the next state and :meth:`unpack_step`'s fields of that battle."""
    _, next_state, flat = battle.step(key, state, actions)
    fields = battle.unpack_step(np.asarray(flat)[None])
    return next_state, fields[0], fields[1], *(np.asarray(f)[0] for f in fields[2:])


def place(state, positions: dict[int, tuple[float, float]], health: dict[int, float] = {}, dead=()):
    """The state with some units moved, their health set, or killed."""
    world = state.state
    pos, hp, alive = world.unit_positions, world.unit_health, world.unit_alive
    for i, xy in positions.items():
        pos = pos.at[i].set(jnp.array(xy))
    for i, h in health.items():
        hp = hp.at[i].set(h)
    for i in dead:
        hp, alive = hp.at[i].set(0.0), alive.at[i].set(False)
    return state.replace(state=world.replace(unit_positions=pos, unit_health=hp, unit_alive=alive))


def test_smac_action_layout_spaces_and_masks():
    env = SMAXVecEnv({"map_name": "3s5z", "state_type": "FP"}, 2, 0)
    obs, share_obs, avail = env.reset()
    assert env.n_agents == 8 and env.action_spaces[0].n == 6 + 8
    assert obs[0].shape == (2, env.observation_spaces[0].shape[0])
    # FP: world state + own observation + one-hot id
    assert share_obs.shape == (2, 8, env._battle.world_state_size + obs[0].shape[1] + 8)
    np.testing.assert_array_equal(share_obs[:, 3, -8:], np.eye(8)[[3, 3]])
    for a in avail:  # alive at the start: no no-op, stop and every move available
        assert np.all(a[:, NO_OP] == 0) and np.all(a[:, STOP] == 1) and np.all(a[:, NORTH : WEST + 1] == 1)


def test_dead_agents_have_only_the_no_op_and_edge_moves_are_unavailable():
    battle, _, state = battle_state("3m")
    state = place(state, {0: (0.3, 16.0), 1: (16.0, 31.8)}, dead=[2])
    avail = np.asarray(battle._available_actions(state.state))
    np.testing.assert_array_equal(avail[2], np.eye(battle.n_actions)[NO_OP])
    assert avail[0, WEST] == 0 and avail[0, EAST] == 1  # one step west would touch the map edge
    assert avail[1, NORTH] == 0 and avail[1, SOUTH] == 1


def test_attack_actions_follow_range_and_target_order():
    battle, _, state = battle_state("3m")
    # ally 0 next to enemy 1 (unit 4) only; marines shoot 5 units far
    state = place(state, {0: (10.0, 10.0), 3: (25.0, 25.0), 4: (13.0, 10.0), 5: (25.0, 5.0)})
    avail = np.asarray(battle._available_actions(state.state))
    np.testing.assert_array_equal(avail[0, FIRST_TARGET:], [0, 1, 0])


def test_medivac_heals_an_injured_ally_in_range():
    battle, key, state = battle_state("MMM2")
    medivac, marine = 9, 2
    assert int(state.state.unit_types[medivac]) == UNIT_ID["medivac"]
    far = {i: (30.0, 2.0 + 2.0 * (i - 10)) for i in range(10, 22)}  # enemies out of sight
    state = place(state, {medivac: (8.0, 16.0), marine: (10.0, 16.0), **far}, health={marine: 20.0})
    avail = np.asarray(battle._available_actions(state.state))
    assert avail[medivac, FIRST_TARGET + marine] == 1 and avail[medivac, FIRST_TARGET + medivac] == 0
    actions = jnp.full((10,), STOP).at[medivac].set(FIRST_TARGET + marine)
    next_state, *_ = step_once(battle, key, state, actions)
    healed = float(next_state.state.unit_health[marine]) - 20.0
    # 12.6 health per second for half a second (8 world steps of 1/16 s)
    assert healed == pytest.approx(12.6 * 0.5, rel=1e-4)


def test_medivac_never_damages_and_ground_units_cannot_shoot_it():
    battle, key, state = battle_state("MMM2")
    world_env = battle.world
    medivac = 9
    # our Medivac among the enemies; every "attack" index of a healer, world step by world step
    state = place(state, {medivac: (20.0, 16.0), **{i: (21.0, 14.0 + 0.5 * (i - 10)) for i in range(10, 22)}})
    world = state.state
    before = world.unit_health
    for k in range(12):
        attack = jnp.zeros(22, dtype=jnp.int32).at[medivac].set(5 + k)
        movement = jnp.zeros((22, 2))
        world = world_env._world_step(jax.random.PRNGKey(k), world, (movement, attack))
        np.testing.assert_array_equal(np.asarray(world.unit_health[10:]), np.asarray(before[10:]))
    # agents: marauders (0, 1) cannot target the enemy Medivac (the last enemy), marines can
    state = place(state, {0: (19.0, 16.0), 2: (19.0, 16.5)})
    avail = np.asarray(battle._available_actions(state.state))
    enemy_medivac = FIRST_TARGET + 11
    assert int(state.state.unit_types[21]) == UNIT_ID["medivac"]
    assert avail[0, enemy_medivac] == 0 and avail[2, enemy_medivac] == 1


def test_win_loss_and_truncation_flags():
    battle, key, state = battle_state("3m")
    limit = MAPS["3m"].episode_limit
    far_apart = {0: (2.0, 14.0), 1: (2.0, 16.0), 2: (2.0, 18.0), 3: (30.0, 14.0), 4: (30.0, 16.0), 5: (30.0, 18.0)}
    stop = jnp.full((3,), STOP)

    at_limit = place(state, far_apart).replace(state=place(state, far_apart).state.replace(step=limit - 1))
    *_, done, truncated, won = step_once(battle, key, at_limit, stop)
    assert done and truncated and not won

    last_enemy = place(state, {0: (10.0, 10.0), 5: (12.0, 10.0)}, health={5: 1.0}, dead=[3, 4])
    attack_last = jnp.array([FIRST_TARGET + 2, STOP, STOP])
    *_, reward, dead, done, truncated, won = step_once(battle, key, last_enemy, attack_last)
    assert done and won and not truncated and reward >= 1.0

    lost = place(state, far_apart, dead=[1, 2], health={0: 0.0})
    lost = lost.replace(state=lost.state.replace(unit_alive=lost.state.unit_alive.at[0].set(False)))
    *_, dead, done, truncated, won = step_once(battle, key, lost, stop)
    assert done and not won and not truncated and np.all(dead)


def test_vector_env_episodes_end_with_win_rate_and_final_observations():
    env = make_train_env("smax", 3, 4, {"map_name": "3m", "state_type": "EP"}, 0)
    _, _, avail = env.reset()
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(MAPS["3m"].episode_limit + 1):
        result = env.step(random_valid_actions(avail, rng))
        avail = result.available_actions
        assert result.rewards.shape == (4, 3) and result.dones.dtype == bool
        for e, info in enumerate(result.infos):
            if info["episode_done"]:
                ended += 1
                assert result.dones[e].all()
                assert info["episode_metrics"]["win_rate"] in (0.0, 1.0)
                assert len(info["final_obs"]) == 3 and info["final_share_obs"].shape == result.share_obs[e].shape
            else:
                assert set(info) == {"bad_transition", "episode_done"}
    assert ended >= 4  # every battle ends within the episode limit


def test_batched_stepping_equals_one_by_one_and_compiles_once():
    args = {"map_name": "3m", "state_type": "FP"}
    batched = make_train_env("smax", 5, 3, args, 0)
    one_by_one = make_train_env("smax", 5, 3, {**args, "batched_step": False}, 0)
    assert isinstance(batched, SMAXVecEnv) and not isinstance(one_by_one, SMAXVecEnv)
    assert batched.episode_limit == one_by_one.episode_limit == MAPS["3m"].episode_limit
    first = [batched.reset(), one_by_one.reset()]
    for a, b in zip(*first):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    rng = np.random.default_rng(1)
    avail = first[0][2]
    for _ in range(70):  # past the first episode end (limit 60)
        actions = random_valid_actions(avail, rng)
        x, y = batched.step(actions), one_by_one.step(actions)
        np.testing.assert_allclose(np.stack(x.obs), np.stack(y.obs), atol=1e-5)
        np.testing.assert_allclose(x.share_obs, y.share_obs, atol=1e-5)
        # float32 health arithmetic compiled for batch 3 and for batch 1: equal up to rounding,
        # which XLA's vectorisation of the two shapes may order differently on another CPU
        np.testing.assert_allclose(x.rewards, y.rewards, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(x.dones, y.dones)
        assert [i["episode_done"] for i in x.infos] == [i["episode_done"] for i in y.infos]
        avail = x.available_actions
    step_fn = _compiled("3m", "FP", False)[2]
    assert step_fn._cache_size() == 2  # batch sizes 3 and 1, each compiled once


def test_obs_own_last_action_appends_each_agents_previous_action():
    """``obs_own_last_action``: SMAX's observation, then the agent's own previous action one-hot:
    zeros at a battle's start (also the next battle's first observation after an episode end),
    the action just taken after a step (also in the final observation); the rest unchanged."""
    plain = SMAXVecEnv({"map_name": "3m", "state_type": "FP"}, 2, 0)
    env = SMAXVecEnv({"map_name": "3m", "state_type": "FP", "obs_own_last_action": True}, 2, 0)
    n = env.action_spaces[0].n
    assert env.observation_spaces[0].shape[0] == plain.observation_spaces[0].shape[0] + n
    obs, share_obs, avail = env.reset()
    plain_obs, _, _ = plain.reset()
    assert all(np.array_equal(o[:, :-n], p) and not o[:, -n:].any() for o, p in zip(obs, plain_obs))
    assert share_obs.shape[-1] == env.share_observation_spaces[0].shape[0]  # FP carries the longer obs
    rng, ended = np.random.default_rng(0), 0
    for _ in range(70):  # past the first episode end (limit 60)
        actions = random_valid_actions(avail, rng)
        result, plain_result = env.step(actions), plain.step(actions)
        done = np.array([info["episode_done"] for info in result.infos])
        ended += done.sum()
        for i, (o, p) in enumerate(zip(result.obs, plain_result.obs)):
            np.testing.assert_array_equal(o[:, :-n], p)
            expected = np.eye(n)[actions[i][:, 0]] * ~done[:, None]
            np.testing.assert_array_equal(o[:, -n:], expected)
        for e in np.flatnonzero(done):
            finals = result.infos[e]["final_obs"]
            assert all(np.array_equal(f[-n:], np.eye(n)[actions[i][e, 0]]) for i, f in enumerate(finals))
        avail = result.available_actions
    assert ended > 0
    with pytest.raises(ValueError, match="obs_own_last_action must be True or False"):
        check_env_args("smax", {"map_name": "3m", "obs_own_last_action": "yes"})


def test_smacv2_style_teams_follow_the_weights_and_exceptions():
    spec = MAPS["terran_10_vs_11"]
    teams = np.asarray(jax.vmap(_WeightedTeams(spec).generate)(_keys(np.arange(2000))))
    allies, enemies = teams[:, :10], teams[:, 10:]
    np.testing.assert_array_equal(enemies[:, :10], allies)  # the enemy copies the ally team
    medivac = UNIT_ID["medivac"]
    assert set(np.unique(teams)) <= {UNIT_ID["marine"], UNIT_ID["marauder"], medivac}
    assert abs((allies == medivac).mean() - 0.1) < 0.02
    assert not np.any((enemies[:, 10:] == medivac).all(axis=1))  # never a Medivac-only extra


def test_bad_map_name_lists_the_maps():
    with pytest.raises(ValueError, match="unknown map_name 'corridor'.*3s5z.*MMM2"):
        check_env_args("smax", {"map_name": "corridor"})
    with pytest.raises(ValueError, match="state_type"):
        check_env_args("smax", {"map_name": "3m", "state_type": "AS"})


def test_global_state_is_at_smac_scale_with_dead_units_zero():
    # SMAX writes positions in map units, cooldowns in seconds that run below zero for a unit
    # that has not fired, and unit type ids as integers; the adapter scales them to [0, ~1]
    battle, key, state = battle_state("3m")
    rng = np.random.default_rng(0)
    state = place(state, {}, dead=[1])
    for _ in range(5):  # few enough that the battle does not end and restart
        avail = np.asarray(battle._available_actions(state.state))
        actions = jnp.asarray(np.where(avail > 0, rng.random(avail.shape), -1.0).argmax(axis=1))
        state, *_ = step_once(battle, key, state, actions)
    raw = battle.world.get_world_state(state.state)
    scaled = np.asarray(battle._world_state(raw))
    unit = len(battle.world.own_features)
    assert np.abs(np.asarray(raw)).max() > 1.5  # the raw state is not at this scale
    assert scaled.min() >= 0.0 and scaled.max() <= 1.2
    np.testing.assert_array_equal(scaled[unit : 2 * unit], 0.0)  # unit 1 is dead
    positions = scaled[: battle.world.num_agents * unit].reshape(-1, unit)[:, 1:3]
    assert positions.max() > 0.1  # map fractions, not collapsed to zero
