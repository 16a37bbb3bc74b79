"""End-to-end on-policy training: every algorithm on MPE (continuous, discrete), Multi-Agent
MuJoCo and the toy env, the results layout, recurrent policies, shared parameters, FP states,
learning on the toy task, determinism and kill-and-resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from e2e_helpers import TINY_ON_POLICY, assert_run_layout, kill_and_resume, read_progress, train

ON_POLICY = ["happo", "hatrpo", "haa2c", "mappo"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("algo", ON_POLICY)
@pytest.mark.parametrize("continuous", [True, False])
def test_mpe_simple_spread(tmp_path, algo, continuous):
    steps = 2 * 20 * 4
    runner = train(
        algo,
        "pettingzoo_mpe",
        str(tmp_path),
        {
            **TINY_ON_POLICY,
            "num_env_steps": steps,
            "continuous_actions": continuous,
        },
    )
    rows = assert_run_layout(runner.run_dir, steps)
    assert all(math.isfinite(float(r["eval_episode_return"])) for r in rows if r["eval_episode_return"])
    task = "simple_spread_v2-continuous" if continuous else "simple_spread_v2-discrete"
    assert f"{os.sep}pettingzoo_mpe{os.sep}{task}{os.sep}{algo}{os.sep}test{os.sep}seed-" in runner.run_dir


@pytest.mark.parametrize("algo", ON_POLICY)
def test_mamujoco_halfcheetah(tmp_path, algo):
    steps = 2 * 20 * 2
    runner = train(
        algo,
        "mamujoco",
        str(tmp_path),
        {
            **TINY_ON_POLICY,
            "num_env_steps": steps,
            "episode_limit": 30,
        },
    )
    assert_run_layout(runner.run_dir, steps)
    assert "HalfCheetah-v2-2x3" in runner.run_dir


def test_heterogeneous_speaker_listener_subprocess_envs(tmp_path):
    """Agents with different observation and action sizes, stepped by worker processes."""
    steps = 2 * 20 * 2
    runner = train(
        "happo",
        "pettingzoo_mpe",
        str(tmp_path),
        {
            **TINY_ON_POLICY,
            "num_env_steps": steps,
            "scenario": "simple_speaker_listener_v3",
            "continuous_actions": False,
            "n_env_workers": 2,
        },
    )
    assert_run_layout(runner.run_dir, steps)
    sizes = {space.shape[0] for space in runner.envs.observation_spaces}
    assert len(sizes) == 2


@pytest.mark.parametrize("recurrent_key", ["use_recurrent_policy", "use_naive_recurrent_policy"])
def test_recurrent_policy_with_action_masks(tmp_path, recurrent_key):
    steps = 2 * 20 * 2
    runner = train(
        "happo",
        "toy",
        str(tmp_path),
        {
            **TINY_ON_POLICY,
            "num_env_steps": steps,
            recurrent_key: True,
            "data_chunk_length": 5,
        },
    )
    assert_run_layout(runner.run_dir, steps)


def test_mappo_shared_parameters_and_fp_state(tmp_path):
    steps = 2 * 20 * 2
    runner = train(
        "mappo",
        "pettingzoo_mpe",
        str(tmp_path),
        {
            **TINY_ON_POLICY,
            "num_env_steps": steps,
            "share_param": True,
        },
    )
    assert_run_layout(runner.run_dir, steps)
    assert len({id(actor) for actor in runner.actor}) == 1
    runner = train(
        "happo",
        "toy",
        str(tmp_path),
        {
            **TINY_ON_POLICY,
            "num_env_steps": steps,
            "state_type": "FP",
            "continuous_agent": True,
        },
    )
    assert_run_layout(runner.run_dir, steps)


def test_share_param_with_different_spaces_is_a_config_error(tmp_path):
    from harl.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="share_param"):
        train("mappo", "toy", str(tmp_path), {**TINY_ON_POLICY, "num_env_steps": 80, "share_param": True})


def test_happo_learns_the_toy_task(tmp_path):
    """The cue-matching game is solved well above chance within a few thousand steps."""
    runner = train(
        "happo",
        "toy",
        str(tmp_path),
        {
            **TINY_ON_POLICY,
            "num_env_steps": 8000,
            "n_rollout_threads": 4,
            "episode_length": 50,
            "hidden_sizes": [32, 32],
            "lr": 0.003,
            "critic_lr": 0.003,
            "eval_interval": 100,
            "eval_episodes": 8,
            "checkpoint_interval": 100,
        },
    )
    rows = read_progress(runner.run_dir)
    final_eval = float(rows[-1]["eval_episode_return"])
    # chance level: a random valid action matches the cue with probability ~1/2 and ~1/3.
    assert final_eval > 0.8 * 10, f"eval return {final_eval} after 8000 steps"
    assert float(rows[-1]["eval_success_rate"]) > 0.8


def test_same_seed_same_run(tmp_path):
    overrides = {**TINY_ON_POLICY, "num_env_steps": 160, "eval_interval": 100}
    first = read_progress(train("happo", "toy", str(tmp_path / "a"), overrides).run_dir)
    second = read_progress(train("happo", "toy", str(tmp_path / "b"), overrides).run_dir)
    columns = ("env_steps", "train_episode_return", "eval_episode_return")
    assert [[r[c] for c in columns] for r in first] == [[r[c] for c in columns] for r in second]


def test_sigkill_and_resume_reaches_the_same_step_count(tmp_path):
    steps_per_episode, episodes, checkpoint_every = 40, 60, 2
    total = steps_per_episode * episodes
    command = [
        sys.executable,
        os.path.join(ROOT, "examples", "train.py"),
        "--algo",
        "happo",
        "--env",
        "toy",
        "--exp_name",
        "resume",
        "--log_dir",
        str(tmp_path),
        "--num_env_steps",
        str(total),
        "--n_rollout_threads",
        "2",
        "--episode_length",
        "20",
        "--hidden_sizes",
        "[16, 16]",
        "--checkpoint_interval",
        str(checkpoint_every),
        "--eval_interval",
        "1000",
        "--log_interval",
        "1",
        "--n_env_workers",
        "1",
        "--torch_threads",
        "1",
        "--eval_episodes",
        "2",
    ]
    run_dir, steps_before, resumed = kill_and_resume(command, str(tmp_path), min_rows=12)
    assert steps_before < total, "the run finished before it was killed; make it longer"
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    steps = [int(r["env_steps"]) for r in read_progress(run_dir)]
    assert steps[-1] == total
    assert steps == sorted(set(steps)), "rows after the checkpoint must be replaced, not duplicated"
    # at most one checkpoint interval of progress is lost
    interval = checkpoint_every * steps_per_episode
    resumed_from = max(s for s in steps if s <= steps_before and s % interval == 0)
    assert steps_before - resumed_from <= interval
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as file:
        assert json.load(file)["algo_args"]["train"]["num_env_steps"] == total


def test_resume_refuses_a_run_without_checkpoint(tmp_path):
    run_dir = tmp_path / "empty"
    (run_dir / "models").mkdir(parents=True)
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "main_args": {"algo": "happo", "env": "toy", "exp_name": "x", "load_config": ""},
                "algo_args": {},
                "env_args": {},
            }
        )
    )
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "train.py"), "--resume", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "checkpoint" in out.stderr.lower()


def test_advantages_are_returns_minus_values_and_fp_ones_are_standardised(tmp_path):
    runner = train("happo", "toy", str(tmp_path), {**TINY_ON_POLICY, "num_env_steps": 40})
    cb = runner.critic_buffer
    expected = cb.returns[:-1] - runner.value_normalizer.denormalize(cb.value_preds[:-1])
    np.testing.assert_allclose(runner.advantages(), expected, rtol=1e-5)
    runner = train("happo", "toy", str(tmp_path), {**TINY_ON_POLICY, "num_env_steps": 40, "state_type": "FP"})
    advantages = runner.advantages()
    assert advantages.shape == (20, 2, 2, 1)
    np.testing.assert_allclose(advantages.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(advantages.std(), 1.0, atol=1e-3)
