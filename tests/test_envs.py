"""Adapters one environment at a time: spaces, shapes, time limits, seeding, name handling."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
from gymnasium import spaces

from harl.envs import (
    ENV_REGISTRY,
    EnvNotInstalledError,
    check_env_args,
    env_spec,
    get_task_name,
    load_adapter,
    make_train_env,
    resolve_n_env_workers,
)
from harl.envs.base import MultiAgentEnv


def valid_actions(env: MultiAgentEnv, avail: list, rng: np.random.Generator) -> list[np.ndarray]:
    """One random action per agent that respects the availability masks."""
    actions = []
    for space, mask in zip(env.action_spaces, avail):
        if isinstance(space, spaces.Discrete):
            allowed = np.flatnonzero(mask) if mask is not None else np.arange(space.n)
            actions.append(np.array([rng.choice(allowed)]))
        else:
            actions.append(rng.normal(size=space.shape).astype(np.float32))
    return actions


def check_shapes(env: MultiAgentEnv, result: tuple) -> None:
    """The shapes and dtypes ARCHITECTURE.md promises for one env's reset/step output."""
    obs, share_obs, avail = result[0], result[1], result[-1]
    assert len(obs) == len(avail) == env.n_agents
    for i in range(env.n_agents):
        assert obs[i].shape == env.observation_spaces[i].shape
        assert obs[i].dtype == np.float32
        if isinstance(env.action_spaces[i], spaces.Discrete):
            assert avail[i].shape == (env.action_spaces[i].n,)
        else:
            assert avail[i] is None
    assert share_obs.shape == (env.n_agents, env.share_observation_spaces[0].shape[0])
    assert share_obs.dtype == np.float32


def run_until_done(env: MultiAgentEnv, seed: int, max_steps: int) -> tuple[int, dict, list]:
    """Steps until every agent is done; returns (steps, last info, rewards per step)."""
    rng = np.random.default_rng(seed)
    first = env.reset(seed)
    check_shapes(env, first)
    avail = first[-1]
    rewards = []
    for t in range(1, max_steps + 1):
        result = env.step(valid_actions(env, avail, rng))
        check_shapes(env, result)
        obs, share_obs, rew, dones, info, avail = result
        assert rew.shape == (env.n_agents,) and dones.shape == (env.n_agents,)
        assert dones.dtype == bool
        rewards.append(rew.copy())
        if dones.all():
            return t, info, rewards
        assert not dones.any() and not info["bad_transition"]
    raise AssertionError(f"episode did not end within {max_steps} steps")


# ---------------------------------------------------------------- MPE

MPE_CASES = [
    # scenario, continuous, obs sizes, state size, action sizes (Box dims or Discrete n)
    ("simple_spread_v2", True, [18, 18, 18], 54, [5, 5, 5]),
    ("simple_spread_v2", False, [18, 18, 18], 54, [5, 5, 5]),
    ("simple_spread_v3", True, [18, 18, 18], 54, [5, 5, 5]),
    ("simple_reference_v2", True, [21, 21], 42, [15, 15]),
    ("simple_reference_v2", False, [21, 21], 42, [50, 50]),
    ("simple_speaker_listener_v3", True, [3, 11], 14, [3, 5]),
    ("simple_speaker_listener_v3", False, [3, 11], 14, [3, 5]),
    ("simple_speaker_listener_v4", False, [3, 11], 14, [3, 5]),
]


@pytest.mark.parametrize("scenario,continuous,obs_sizes,state_size,act_sizes", MPE_CASES)
def test_mpe_spaces_steps_and_truncation(scenario, continuous, obs_sizes, state_size, act_sizes):
    pytest.importorskip("mpe2")
    env_args = {"scenario": scenario, "continuous_actions": continuous, "max_cycles": 4}
    env = load_adapter("pettingzoo_mpe")(env_args)
    assert [s.shape[0] for s in env.observation_spaces] == obs_sizes
    assert all(s.shape == (state_size,) for s in env.share_observation_spaces)
    if continuous:
        assert all(isinstance(s, spaces.Box) for s in env.action_spaces)
        assert [s.shape[0] for s in env.action_spaces] == act_sizes
        assert all(np.all(s.low == 0) and np.all(s.high == 1) for s in env.action_spaces)
    else:
        assert [s.n for s in env.action_spaces] == act_sizes
    steps, info, rewards = run_until_done(env, seed=3, max_steps=10)
    assert steps == 4
    assert info["bad_transition"] is True and info["episode_metrics"] == {}
    # HARL's team reward: every agent gets the sum of the agents' rewards.
    assert all(np.all(r == r[0]) for r in rewards)
    mode = "continuous" if continuous else "discrete"
    assert get_task_name("pettingzoo_mpe", env_args) == f"{scenario}-{mode}"
    env.close()


@pytest.mark.parametrize("scenario", ["simple_spread_v3", "simple_reference_v3", "simple_speaker_listener_v4"])
@pytest.mark.parametrize("continuous", [True, False])
def test_mpe_adapter_equals_pettingzoo_parallel_env(scenario, continuous):
    """The adapter steps mpe2's unwrapped AEC env; it must match the public parallel_env."""
    pytest.importorskip("mpe2")
    import importlib

    reference = importlib.import_module(f"mpe2.{scenario}").parallel_env(continuous_actions=continuous, max_cycles=6)
    env = load_adapter("pettingzoo_mpe")({"scenario": scenario, "continuous_actions": continuous, "max_cycles": 6})
    names = reference.possible_agents
    ref_obs, _ = reference.reset(seed=4)
    obs, share_obs, _ = env.reset(4)
    rng = np.random.default_rng(0)
    for _ in range(6):
        for i, name in enumerate(names):
            np.testing.assert_array_equal(obs[i], ref_obs[name])
        np.testing.assert_array_equal(share_obs[0], reference.state())
        if continuous:
            actions = [rng.uniform(0, 1, s.shape).astype(np.float32) for s in env.action_spaces]
        else:
            actions = [np.array([rng.integers(s.n)]) for s in env.action_spaces]
        ref_actions = {n: (a if continuous else int(a[0])) for n, a in zip(names, actions)}
        ref_obs, ref_rew, ref_term, ref_trunc, _ = reference.step(ref_actions)
        obs, share_obs, rew, dones, info, _ = env.step(actions)
        assert rew[0] == pytest.approx(sum(ref_rew[n] for n in names), rel=1e-6)
        assert dones.all() == all(ref_term[n] or ref_trunc[n] for n in names)
    assert dones.all() and info["bad_transition"]


def test_mpe_discrete_availability_is_all_ones():
    pytest.importorskip("mpe2")
    env = load_adapter("pettingzoo_mpe")({"continuous_actions": False})
    _, _, avail = env.reset(0)
    assert all(np.array_equal(a, np.ones(5, dtype=np.float32)) for a in avail)


def test_mpe_continuous_actions_are_clipped():
    pytest.importorskip("mpe2")
    adapter = load_adapter("pettingzoo_mpe")
    outputs = []
    for big in (1.0, 50.0):
        env = adapter({"scenario": "simple_spread_v2", "continuous_actions": True})
        env.reset(7)
        raw = [np.array([big, -big, big, -big, 0.3], dtype=np.float32)] * env.n_agents
        outputs.append(env.step(raw)[0])
    for a, b in zip(*outputs):
        np.testing.assert_array_equal(a, b)


def test_mpe_harl_name_is_mapped_and_logged_once(caplog):
    pytest.importorskip("mpe2")
    from harl.envs.pettingzoo_mpe import pettingzoo_mpe_env

    pettingzoo_mpe_env._logged_mappings.discard("simple_reference_v2")
    with caplog.at_level(logging.INFO, logger="harl.envs.pettingzoo_mpe.pettingzoo_mpe_env"):
        check_env_args("pettingzoo_mpe", {"scenario": "simple_reference_v2"})
        check_env_args("pettingzoo_mpe", {"scenario": "simple_reference_v2"})
    mentions = [r for r in caplog.records if "simple_reference_v3" in r.getMessage()]
    assert len(mentions) == 1


def test_mpe_same_seed_same_episode():
    pytest.importorskip("mpe2")
    adapter = load_adapter("pettingzoo_mpe")
    episodes = [run_until_done(adapter({"max_cycles": 5}), seed=11, max_steps=5)[2] for _ in "ab"]
    np.testing.assert_array_equal(episodes[0], episodes[1])
    other = run_until_done(adapter({"max_cycles": 5}), seed=12, max_steps=5)[2]
    assert not np.array_equal(episodes[0], other)


def test_mpe_unknown_scenario_lists_supported():
    pytest.importorskip("mpe2")
    with pytest.raises(ValueError, match="simple_spread_v2.*simple_speaker_listener_v3"):
        check_env_args("pettingzoo_mpe", {"scenario": "simple_tag_v2"})


# ---------------------------------------------------------------- MaMuJoCo

MAMUJOCO_CASES = [
    # scenario, agent_conf, action dims per agent, state size
    ("HalfCheetah-v2", "2x3", [3, 3], 17),
    ("HalfCheetah-v2", "3x2", [2, 2, 2], 17),
    ("Ant-v2", "4x2", [2, 2, 2, 2], 105),
    ("Ant-v2", "8x1", [1] * 8, 105),
    ("Hopper-v2", "3x1", [1, 1, 1], 11),
    ("Walker2d-v2", "2x3", [3, 3], 17),
    ("Walker2d-v2", "6x1", [1] * 6, 17),
    ("Humanoid-v2", "17x1", [1] * 17, 348),
]


@pytest.mark.parametrize("scenario,agent_conf,act_dims,state_size", MAMUJOCO_CASES)
def test_mamujoco_spaces_steps_and_truncation(scenario, agent_conf, act_dims, state_size):
    pytest.importorskip("gymnasium_robotics")
    env_args = {"scenario": scenario, "agent_conf": agent_conf, "episode_limit": 3}
    env = load_adapter("mamujoco")(env_args)
    assert env.n_agents == len(act_dims)
    assert [s.shape[0] for s in env.action_spaces] == act_dims
    assert all(np.all(s.low == -1) and np.all(s.high == 1) for s in env.action_spaces)
    assert all(s.shape == (state_size,) for s in env.share_observation_spaces)
    # Gentle actions so no robot falls within 3 steps: the episode must end by truncation.
    env.reset(0)
    for _ in range(3):
        obs, share_obs, rew, dones, info, avail = env.step(
            [np.zeros(s.shape, dtype=np.float32) for s in env.action_spaces]
        )
        check_shapes(env, (obs, share_obs, avail))
        assert np.all(rew == rew[0])
    assert dones.all() and info["bad_transition"] is True
    assert get_task_name("mamujoco", env_args) == f"{scenario}-{agent_conf}"
    env.close()


def test_mamujoco_single_joint_agents_cover_every_actuator_once():
    pytest.importorskip("gymnasium_robotics")
    env = load_adapter("mamujoco")({"scenario": "Humanoid-v2", "agent_conf": "17x1"})
    act_ids = sorted(part[0].act_ids for part in env._env.agent_action_partitions)
    assert act_ids == list(range(17))


def test_mamujoco_fall_is_termination_not_truncation():
    pytest.importorskip("gymnasium_robotics")
    env = load_adapter("mamujoco")({"scenario": "Hopper-v2", "agent_conf": "3x1"})
    env.reset(0)
    for _ in range(200):  # full torque makes the hopper fall within a few dozen steps
        *_, dones, info, _ = env.step([np.ones(1, dtype=np.float32)] * 3)
        if dones.all():
            break
    assert dones.all() and info["bad_transition"] is False


def test_mamujoco_actions_map_onto_actuator_range():
    pytest.importorskip("gymnasium_robotics")
    env = load_adapter("mamujoco")({"scenario": "Humanoid-v2", "agent_conf": "9|8"})
    env.reset(0)
    env.step([np.full(s.shape, 5.0, dtype=np.float32) for s in env.action_spaces])
    ctrl = env._env.single_agent_env.unwrapped.data.ctrl
    np.testing.assert_allclose(ctrl, 0.4)  # raw 5 clipped to 1, mapped to the top of [-0.4, 0.4]


def test_mamujoco_harl_state_observations():
    pytest.importorskip("gymnasium_robotics")
    env = load_adapter("mamujoco")({"obs_mode": "harl_state"})
    obs, share_obs, _ = env.reset(0)
    assert [o.shape for o in obs] == [(19,), (19,)]  # 17 state features + 2 agent ids
    assert not np.array_equal(obs[0], obs[1])  # the one-hot ids differ
    for vector in (*obs, share_obs[0]):
        assert abs(vector.mean()) < 1e-5 and abs(vector.std() - 1) < 1e-3


def test_mamujoco_same_seed_same_episode():
    pytest.importorskip("gymnasium_robotics")
    adapter = load_adapter("mamujoco")
    runs = []
    for seed in (5, 5, 6):
        env = adapter({"scenario": "Hopper-v2", "agent_conf": "3x1", "episode_limit": 5})
        runs.append(np.concatenate(run_until_done(env, seed, 5)[2]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize(
    "env_args,expected",
    [
        ({"scenario": "Swimmer-v2"}, "supported: Ant, HalfCheetah"),
        ({"scenario": "Hopper-v2", "agent_conf": "2x3"}, "supported: 3x1"),
        ({"scenario": "Walker2d-v2", "agent_conf": "3x2"}, "supported: 2x3, 6x1"),
        ({"state_type": "FP"}, "use state_type: EP"),
        ({"obs_mode": "global"}, "obs_mode must be one of"),
    ],
)
def test_mamujoco_bad_args_say_what_is_supported(env_args, expected):
    pytest.importorskip("gymnasium_robotics")
    with pytest.raises(ValueError, match=expected):
        check_env_args("mamujoco", env_args)


# ---------------------------------------------------------------- toy


def test_toy_spaces_are_heterogeneous():
    env = load_adapter("toy")({"continuous_agent": True})
    assert [s.shape[0] for s in env.observation_spaces] == [4, 8, 3]
    assert [type(s) for s in env.action_spaces] == [spaces.Discrete, spaces.Discrete, spaces.Box]
    assert [s.n for s in env.action_spaces[:2]] == [3, 5]
    assert env.share_observation_spaces[0].shape == (15,)
    steps, info, _ = run_until_done(env, seed=0, max_steps=20)
    assert steps == 10 and info["bad_transition"] is True
    assert set(info["episode_metrics"]) == set(env.episode_metric_names) == {"success_rate"}


def test_toy_masks_vary_and_unavailable_action_raises():
    env = load_adapter("toy")({})
    rng = np.random.default_rng(0)
    avail = env.reset(0)[2]
    masks = [avail[1]]
    for _ in range(5):
        avail = env.step(valid_actions(env, avail, rng))[5]
        masks.append(avail[1])
    assert all(m.min() == 0 for m in masks)  # every step some action is unavailable
    assert len({m.tobytes() for m in masks}) > 1  # and which ones changes
    blocked = int(np.flatnonzero(avail[0] == 0)[0])
    allowed = int(np.flatnonzero(avail[1])[0])
    with pytest.raises(ValueError, match="agent 0 executed action .* not available"):
        env.step([np.array([blocked]), np.array([allowed])])


def test_toy_reward_rewards_following_the_cue():
    env = load_adapter("toy")({"episode_limit": 4})
    obs, _, _ = env.reset(1)
    total = 0.0
    for _ in range(4):
        cued = [np.array([int(np.argmax(o[: s.n]))]) for o, s in zip(obs, env.action_spaces)]
        obs, _, rew, dones, info, _ = env.step(cued)
        total += rew[0]
    assert total == 4.0 and info["episode_metrics"] == {"success_rate": 1.0}


def test_toy_terminate_on_miss_is_not_a_bad_transition():
    env = load_adapter("toy")({"terminate_on_miss": True})
    for seed in range(20):  # find a start where agent 1 has an available non-cued action
        obs, _, avail = env.reset(seed)
        cues = [int(np.argmax(obs[0][:3])), int(np.argmax(obs[1][:5]))]
        misses = [a for a in np.flatnonzero(avail[1]) if a != cues[1]]
        if misses:
            break
    *_, dones, info, _ = env.step([np.array([cues[0]]), np.array([misses[0]])])
    assert dones.all() and info["bad_transition"] is False
    assert info["episode_metrics"] == {"success_rate": 0.0}


def test_toy_fp_state_has_agent_ids():
    env = load_adapter("toy")({"state_type": "FP"})
    _, share_obs, _ = env.reset(0)
    assert share_obs.shape == (2, 12 + 2)
    np.testing.assert_array_equal(share_obs[:, -2:], np.eye(2))


# ---------------------------------------------------------------- registry


def test_unknown_env_name_lists_registered_names():
    with pytest.raises(
        ValueError,
        match="registered environments: dexhands, football, mamujoco, occupation, pettingzoo_mpe, smac, smacv2, "
        "smax, toy",
    ):
        make_train_env("starcraft3", 1, 2, {}, 0)
    assert set(ENV_REGISTRY) >= {"pettingzoo_mpe", "mamujoco", "smac", "smacv2", "smax", "toy", "occupation"}


@pytest.mark.parametrize(
    "env_name,package,extra",
    [
        ("pettingzoo_mpe", "mpe2", "mpe"),
        ("mamujoco", "gymnasium_robotics", "mamujoco"),
        ("smax", "jaxmarl.environments.smax", "smax"),
    ],
)
def test_missing_package_names_the_pip_extra(monkeypatch, env_name, package, extra):
    module_name = env_spec(env_name).adapter.partition(":")[0]
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    monkeypatch.setitem(sys.modules, package, None)  # makes `import <package>` fail
    with pytest.raises(EnvNotInstalledError, match=rf'pip install -e "\.\[{extra}\]"'):
        make_train_env(env_name, 1, 2, {}, 0)
    # The other environments are unaffected.
    make_train_env("toy", 1, 2, {}, 0).close()


def test_importing_the_registry_imports_no_environment_package():
    import subprocess

    code = (
        "import sys, harl.envs; "
        "print(sorted(m for m in ('mpe2', 'pettingzoo', 'gymnasium_robotics', 'mujoco', 'jax', 'jaxmarl', 'smac') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_env_arg_names_the_valid_keys():
    with pytest.raises(ValueError, match="'episode_length'.*valid keys.*episode_limit"):
        check_env_args("toy", {"episode_length": 5})


def test_partial_env_args_take_yaml_defaults():
    assert check_env_args("toy", {"episode_limit": 3})["continuous_agent"] is False
    assert get_task_name("mamujoco", {}) == "HalfCheetah-v2-2x3"
    assert get_task_name("pettingzoo_mpe", {}) == "simple_spread_v2-continuous"
    assert get_task_name("toy", {"continuous_agent": True}) == "toy-mixed"


def test_worker_count_resolution(monkeypatch):
    assert resolve_n_env_workers(0, 20) == 0
    assert resolve_n_env_workers(4, 20) == 4
    assert resolve_n_env_workers(4, 2) == 2
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert resolve_n_env_workers(-1, 20) == 3
    assert resolve_n_env_workers(-1, 2) == 2
    with pytest.raises(ValueError, match="n_env_workers must be"):
        resolve_n_env_workers(-2, 20)
