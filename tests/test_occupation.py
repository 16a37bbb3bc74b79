"""The occupation game (harl/envs/occupation) and MPE landmark coverage: geometry, reward,
coverage metrics, training."""

from __future__ import annotations

import numpy as np
import pytest
from e2e_helpers import TINY_OFF_POLICY, TINY_ON_POLICY, assert_run_layout, train

from harl.envs import check_env_args, make_train_env
from harl.envs.coverage import balance, occupancy
from harl.envs.occupation.occupation_env import OccupationEnv, target_positions


def drive(env: OccupationEnv, goals: np.ndarray) -> tuple[list[float], dict]:
    """Steer every agent at full speed towards its goal until the episode ends."""
    rewards, info = [], {}
    done = False
    while not done:
        offsets = goals - env.positions
        norms = np.maximum(np.linalg.norm(offsets, axis=1, keepdims=True), 1e-6)
        velocity = offsets / np.maximum(norms, env.max_speed) * np.minimum(norms, env.max_speed) / env.max_speed
        _, _, reward, dones, info, _ = env.step(list(velocity))
        rewards.append(float(reward[0]))
        done = bool(dones.all())
    return rewards, info


def test_targets_sit_evenly_on_the_circle_and_occupancy_uses_the_radius():
    targets = target_positions(4, 0.7)
    np.testing.assert_allclose(np.linalg.norm(targets, axis=1), 0.7, atol=1e-6)
    np.testing.assert_allclose(targets[0], [0.7 / np.sqrt(2)] * 2, atol=1e-6)
    inside, outside = targets[2] + [0.19, 0.0], targets[3] + [0.0, 0.21]
    assert occupancy(np.stack([inside, outside]), targets, 0.2).tolist() == [False, False, True, False]


def test_balance_is_one_for_equal_holding_and_zero_for_one_target_or_none():
    assert balance(np.array([5.0, 5.0, 5.0, 5.0])) == pytest.approx(1.0)
    assert balance(np.array([9.0, 0.0, 0.0, 0.0])) == 0.0
    assert balance(np.zeros(4)) == 0.0
    assert 0.0 < balance(np.array([8.0, 1.0, 1.0, 0.0])) < balance(np.array([4.0, 3.0, 3.0, 0.0])) < 1.0


def test_spreading_over_every_target_earns_full_reward_and_full_balance():
    env = OccupationEnv({})
    env.reset(seed=0)
    rewards, info = drive(env, env.targets)  # agent k to target k
    assert rewards[-1] == 1.0 and len(rewards) == env.episode_limit
    metrics = info["episode_metrics"]
    assert info["bad_transition"] and set(metrics) == set(env.episode_metric_names)
    assert metrics["balance"] == pytest.approx(1.0)
    assert metrics["coverage"] == pytest.approx(np.mean(rewards))
    # coverage is the mean of the four equal target shares: equal up to the summation's rounding
    assert [metrics[f"target_{k}"] for k in range(4)] == pytest.approx([metrics["coverage"]] * 4, rel=1e-12, abs=0)


def test_collapsing_on_one_target_earns_a_quarter_and_zero_balance():
    env = OccupationEnv({})
    env.reset(seed=1)
    rewards, info = drive(env, np.repeat(env.targets[:1], 4, axis=0))
    assert rewards[-1] == 0.25
    assert info["episode_metrics"]["balance"] == 0.0 and info["episode_metrics"]["target_1"] == 0.0


@pytest.mark.parametrize("state_type", ["EP", "FP"])
def test_spaces_observations_and_seeded_resets(state_type):
    env = OccupationEnv({"n_agents": 3, "n_targets": 5, "state_type": state_type})
    obs, share_obs, avail = env.reset(seed=3)
    obs_size = 2 + 2 * 5 + 2 * 2 + 1
    state_size = 2 * 3 + 2 * 5 + 1 + (obs_size + 3 if state_type == "FP" else 0)
    assert [o.shape for o in obs] == [(obs_size,)] * 3 and avail == [None] * 3
    assert share_obs.shape == (3, state_size) and share_obs.dtype == np.float32
    assert np.abs(env.positions).max() <= 0.05  # everyone starts at the centre
    np.testing.assert_array_equal(obs[1][2:4], env.targets[0] - env.positions[1])
    again = OccupationEnv({"n_agents": 3, "n_targets": 5, "state_type": state_type}).reset(seed=3)
    np.testing.assert_array_equal(np.stack(again[0]), np.stack(obs))
    # actions beyond the box are clipped to max_speed, and positions to the arena
    for _ in range(30):
        env.step([np.array([5.0, 5.0], np.float32)] * 3)
    assert np.all(env.positions <= 1.0)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"n_agents": 0}, "n_agents must be a positive integer"),
        ({"target_radius": -0.1}, "target_radius must be a positive number"),
        ({"target_distance": 0.9, "target_radius": 0.2}, "must be at most 1"),
        ({"state_type": "XP"}, "state_type"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(bad, message):
    with pytest.raises(ValueError, match=message):
        check_env_args("occupation", bad)


def test_vector_env_reports_the_coverage_metrics():
    env = make_train_env("occupation", 3, 2, {"episode_limit": 5}, 0)
    assert env.episode_limit == 5 and "coverage" in env.episode_metric_names
    env.reset()
    for _ in range(5):
        result = env.step([np.zeros((2, 2), np.float32)] * 4)
    assert all(info["episode_done"] and info["episode_metrics"]["coverage"] == 0.0 for info in result.infos)


@pytest.mark.parametrize(
    "algo, overrides",
    [
        ("happo", TINY_ON_POLICY),
        ("haqo", {**TINY_OFF_POLICY, "n_timesteps": 2}),
        ("haqo", {**TINY_OFF_POLICY, "n_timesteps": 2, "actor": "gaussian"}),
    ],
)
def test_training_logs_coverage_for_haqo_its_gaussian_ablation_and_happo(tmp_path, algo, overrides):
    runner = train(algo, "occupation", str(tmp_path), {**overrides, "num_env_steps": 200, "episode_limit": 10})
    rows = assert_run_layout(runner.run_dir, 200)
    evaluated = [r for r in rows if r["eval_coverage"] != ""]
    assert evaluated and all(0.0 <= float(r["eval_coverage"]) <= 1.0 for r in evaluated)
    assert all(r["eval_target_3"] != "" for r in evaluated)


def test_landmark_coverage_is_simple_spread_with_two_agents_and_three_fixed_landmarks():
    from harl.envs.pettingzoo_mpe.landmark_coverage import landmark_places
    from harl.envs.pettingzoo_mpe.pettingzoo_mpe_env import PettingZooMPEEnv

    env = PettingZooMPEEnv({"scenario": "landmark_coverage", "continuous_actions": True})
    assert env.n_agents == 2 and env.episode_limit == 25
    assert env.episode_metric_names == ("coverage", "balance", "landmark_0", "landmark_1", "landmark_2")
    for seed in (0, 1):
        env.reset(seed=seed)
        np.testing.assert_allclose([lm.state.p_pos for lm in env._env.world.landmarks], landmark_places())
    # agent 0 sits on landmark 2 for the whole episode, agent 1 far from every landmark
    world = env._env.world
    info = {}
    for _ in range(25):
        world.agents[0].state.p_pos = landmark_places()[2].copy()
        world.agents[1].state.p_pos = np.array([0.0, -1.5])
        _, _, reward, _, info, _ = env.step([np.zeros(5, np.float32)] * 2)
    metrics = info["episode_metrics"]
    assert metrics["landmark_2"] > 0.9 and metrics["landmark_0"] == metrics["landmark_1"] == 0.0
    assert metrics["balance"] == 0.0 and metrics["coverage"] == pytest.approx(metrics["landmark_2"] / 3)
    assert reward[0] < 0  # simple_spread's reward: minus the distances to the uncovered landmarks
    plain = PettingZooMPEEnv({"scenario": "simple_spread_v2"})
    plain.reset(seed=0)
    assert plain.episode_metric_names == ()


def test_training_on_landmark_coverage_logs_per_landmark_coverage(tmp_path):
    runner = train(
        "haqo",
        "pettingzoo_mpe",
        str(tmp_path),
        {**TINY_OFF_POLICY, "n_timesteps": 2, "num_env_steps": 200, "scenario": "landmark_coverage"},
    )
    evaluated = [r for r in assert_run_layout(runner.run_dir, 200) if r["eval_coverage"] != ""]
    assert evaluated and all(r["eval_landmark_2"] != "" for r in evaluated)
    assert "landmark_coverage" in runner.run_dir
