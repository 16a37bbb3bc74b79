"""Google Research Football (``--env football``): the adapter's own computations always; the real
engine (``gfootball``, built by ``scripts/install_football.sh``, which CI runs) where installed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from e2e_helpers import TINY_OFF_POLICY, TINY_ON_POLICY, TINY_PER_ALGO, heavy_import_recorder, read_progress, train

from harl.envs import EnvNotInstalledError, check_env_args, make_train_env
from harl.envs.football.features import ACADEMY_PLAYERS, CHECKPOINT_BONUS, checkpoint_rewards, global_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_global_state_is_the_shared_part_once_and_every_active_block():
    n = 3
    obs = np.arange(n * 115, dtype=np.float32).reshape(n, 115)
    state = global_state(obs)
    assert state.shape == (115 + 11 * (n - 1),)
    np.testing.assert_array_equal(state[:97], obs[0, :97])  # teams, ball, ball owner
    np.testing.assert_array_equal(state[97:104], obs[0, 108:115])  # game mode
    np.testing.assert_array_equal(state[104:], obs[:, 97:108].ravel())  # each player's active one-hot


def _carrier(x: float, y: float = 0.0, owner_team: int = 0) -> dict:
    return {"ball_owned_team": owner_team, "ball_owned_player": 2, "active": 2, "ball": np.array([x, y, 0.0])}


def test_checkpoint_rings_are_paid_once_and_the_rest_on_a_goal():
    collected = np.zeros(1, dtype=np.int64)
    no_goal = np.zeros(1)
    # 0.5 from the goal centre (1, 0): rings 0.99 - 0.8 k / 9 >= 0.5 are k = 0..5
    assert checkpoint_rewards([_carrier(0.5)], no_goal, collected)[0] == pytest.approx(6 * CHECKPOINT_BONUS)
    assert checkpoint_rewards([_carrier(0.5)], no_goal, collected)[0] == 0.0  # already paid
    assert checkpoint_rewards([_carrier(0.3)], no_goal, collected)[0] == 0.0  # moving away pays nothing
    assert checkpoint_rewards([_carrier(0.8, owner_team=1)], no_goal, collected)[0] == 0.0
    # 0.25 from the goal: rings k = 0..8, three of them new
    assert checkpoint_rewards([_carrier(0.75)], no_goal, collected)[0] == pytest.approx(3 * CHECKPOINT_BONUS)
    assert collected[0] == 9
    assert checkpoint_rewards([_carrier(0.9)], np.ones(1), collected)[0] == pytest.approx(CHECKPOINT_BONUS)
    assert collected[0] == 10
    # a player who is not the carrier collects nothing
    other = {**_carrier(0.5), "active": 1}
    assert checkpoint_rewards([other], no_goal, np.zeros(1, dtype=np.int64))[0] == 0.0


def test_missing_package_names_the_install_script(monkeypatch):
    monkeypatch.delitem(sys.modules, "harl.envs.football.football_env", raising=False)
    monkeypatch.setitem(sys.modules, "gfootball", None)
    with pytest.raises(EnvNotInstalledError, match="bash scripts/install_football.sh"):
        make_train_env("football", 1, 2, {}, 0)


def test_missing_package_stops_train_py_in_seconds(tmp_path):
    log_dir = tmp_path / "results"
    code = (
        "import sys, runpy; sys.modules['gfootball'] = None; "
        f"sys.argv = ['train.py', '--algo', 'happo', '--env', 'football', '--log_dir', {str(log_dir)!r}]; "
        "runpy.run_path('examples/train.py', run_name='__main__')"
    )
    env, imported = heavy_import_recorder(str(tmp_path / "probe"))
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)
    elapsed = time.monotonic() - start
    assert out.returncode != 0
    assert "install_football.sh" in out.stderr and "Traceback" not in out.stderr
    # "in seconds" on any machine: it stops before importing torch; the wall-clock bound is only
    # a hang detector, generous for a loaded or cold machine
    with open(imported, encoding="utf-8") as file:
        assert file.read() == ""  # the heavy packages imported before the error: none
    assert elapsed < 30 and (not log_dir.exists() or not os.listdir(log_dir))


# ----------------------------------------------------------------- with the real engine

requires_engine = pytest.mark.skipif(
    importlib.util.find_spec("gfootball") is None, reason="gfootball is built by scripts/install_football.sh"
)


@requires_engine
@pytest.mark.parametrize(
    "bad, message",
    [
        ({"env_name": "11_vs_11_stochastic"}, "unsupported env_name"),
        ({"env_name": "academy_counterattack_easy"}, "--number_of_left_players_agent_controls 4"),
        ({"representation": "extracted"}, "unsupported representation"),
        ({"rewards": "checkpoints"}, "rewards must be one of"),
        ({"write_video": True}, "write_video must be False"),
        ({"number_of_right_players_agent_controls": 1}, "left team only"),
    ],
)
def test_bad_settings_are_refused_with_the_valid_values(bad, message):
    with pytest.raises(ValueError, match=message):
        check_env_args("football", bad)


def _play(env, seed: int, steps: int, action: int = 0):
    obs, state, avail = env.reset(seed=seed)
    trace = [np.concatenate(obs)]
    for _ in range(steps):
        obs, state, rewards, dones, info, avail = env.step([np.array([action])] * env.n_agents)
        trace.append(np.concatenate(obs))
        if dones.all():
            break
    return np.stack(trace), info, rewards


@requires_engine
@pytest.mark.parametrize("task", sorted(ACADEMY_PLAYERS))
def test_every_task_builds_with_harls_spaces(task):
    from harl.envs.football.football_env import FootballEnv

    n = ACADEMY_PLAYERS[task]
    env = FootballEnv({"env_name": task, "number_of_left_players_agent_controls": n})
    try:
        obs, state, avail = env.reset(seed=3)
        assert env.n_agents == n and len(obs) == n and all(o.shape == (115,) for o in obs)
        assert state.shape == (n, 115 + 11 * (n - 1)) and env.share_observation_spaces[0].shape == (115 + 11 * (n - 1),)
        assert all(a.n == 19 for a in env.action_spaces) and all(m.sum() == 19 for m in avail)
        assert env.episode_limit > 0
    finally:
        env.close()


@requires_engine
def test_an_episode_ends_with_its_metrics_and_seeds_repeat():
    from harl.envs.football.football_env import FootballEnv

    env = FootballEnv({})
    try:
        # action 12 = shot: the attackers shoot at once, which ends the academy episode quickly
        first, info, rewards = _play(env, seed=5, steps=500, action=12)
        assert set(info["episode_metrics"]) == {"score_rate", "goals"}
        assert info["episode_metrics"]["score_rate"] in (0.0, 1.0)
        assert rewards.shape == (3,) and np.all(rewards == rewards[0])
        again, _, _ = _play(env, seed=5, steps=500, action=12)
        np.testing.assert_array_equal(first, again)
    finally:
        env.close()


@requires_engine
@pytest.mark.parametrize("algo", ["happo", "haqo"])
def test_training_end_to_end_reports_the_score_rate(tmp_path, algo):
    tiny = {**(TINY_ON_POLICY if algo == "happo" else TINY_OFF_POLICY), **TINY_PER_ALGO.get(algo, {})}
    tiny.pop("n_env_workers")  # the environment's default: worker processes
    steps = 80 if algo == "happo" else 60
    runner = train(algo, "football", str(tmp_path), {**tiny, "num_env_steps": steps})
    rows = read_progress(runner.run_dir)
    assert int(rows[-1]["env_steps"]) == steps
    assert rows[-1]["eval_score_rate"] != "" and 0.0 <= float(rows[-1]["eval_score_rate"]) <= 1.0
    assert "eval_goals" in rows[-1]
    assert type(runner.envs).__name__ == "SubprocVecEnv"
    if algo == "happo":  # the re-evaluation script reports the score rate too
        script = os.path.join(os.path.dirname(__file__), "..", "examples", "evaluate.py")
        out = subprocess.run(
            [sys.executable, script, runner.run_dir, "--eval_episodes", "2"], capture_output=True, text=True, check=True
        ).stdout
        rate = out.strip().splitlines()[-1].split("|")[6].strip()
        assert 0.0 <= float(rate) <= 1.0
