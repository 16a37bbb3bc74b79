"""Vectorised environments: batching, auto-reset, seeding, worker processes and their failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from gymnasium import spaces

from harl.envs import EnvWorkerError, load_adapter, make_eval_env, make_train_env
from harl.envs.base import StepResult
from harl.envs.vec_env import EnvFactory, InProcessVecEnv, SubprocVecEnv

TOY_MIXED = {"continuous_agent": True, "episode_limit": 3}


def random_actions(vec, avail: list, rng: np.random.Generator) -> list[np.ndarray]:
    """One (E, a_i) array per agent; discrete agents pick uniformly among available actions."""
    actions = []
    for space, mask in zip(vec.action_spaces, avail):
        if isinstance(space, spaces.Discrete):
            mask = np.ones((vec.n_envs, space.n)) if mask is None else mask
            actions.append(np.array([[rng.choice(np.flatnonzero(m))] for m in mask]))
        else:
            actions.append(rng.normal(size=(vec.n_envs, *space.shape)).astype(np.float32))
    return actions


def rollout(vec, steps: int, seed: int = 0) -> list:
    """Reset, then step with random valid actions; returns everything seen, for comparisons."""
    rng = np.random.default_rng(seed)
    first = vec.reset()
    seen = [first]
    avail = first[2]
    for _ in range(steps):
        result = vec.step(random_actions(vec, avail, rng))
        seen.append(result)
        avail = result.available_actions
    return seen


def assert_same(a, b) -> None:
    """Deep equality of nested lists/tuples/dicts of arrays."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif a is None:
        assert b is None
    else:
        np.testing.assert_array_equal(a, b)


def test_shapes_dtypes_and_auto_reset_infos():
    vec = make_train_env("toy", 1, 4, TOY_MIXED, 0)
    assert isinstance(vec, InProcessVecEnv) and vec.n_envs == 4 and vec.n_agents == 3
    obs, share_obs, avail = vec.reset()
    assert [o.shape for o in obs] == [(4, 4), (4, 8), (4, 3)]
    assert share_obs.shape == (4, 3, 15) and share_obs.dtype == np.float32
    assert [None if a is None else a.shape for a in avail] == [(4, 3), (4, 5), None]
    rng = np.random.default_rng(0)
    for _ in range(3):
        result = vec.step(random_actions(vec, avail, rng))
        avail = result.available_actions
        assert isinstance(result, StepResult)
        assert all(o.dtype == np.float32 for o in result.obs)
        assert result.rewards.shape == (4, 3) and result.rewards.dtype == np.float32
        assert result.dones.shape == (4, 3) and result.dones.dtype == bool
        assert all(a.dtype == np.float32 for a in result.available_actions[:2])
        assert len(result.infos) == 4
    # Step 3 = episode_limit: every env ended by truncation and was reset.
    assert result.dones.all()
    for info in result.infos:
        assert info["episode_done"] and info["bad_transition"]
        assert [o.shape for o in info["final_obs"]] == [(4,), (8,), (3,)]
        assert info["final_obs"][0][-1] == 1.0  # time fraction at the end of the episode
        assert info["final_share_obs"].shape == (3, 15)
        assert [None if a is None else a.shape for a in info["final_available_actions"]] == [
            (3,),
            (5,),
            None,
        ]
        assert set(info["episode_metrics"]) == {"success_rate"}
    assert np.all(result.obs[0][:, -1] == 0.0)  # the returned obs start the next episode
    vec.close()


def test_mid_episode_infos_have_only_the_flags():
    vec = make_train_env("toy", 1, 2, TOY_MIXED, 0)
    result = rollout(vec, 1)[-1]
    assert result.infos == [{"bad_transition": False, "episode_done": False}] * 2


def test_env_k_is_seeded_with_seed_times_1000_plus_k():
    adapter = load_adapter("toy")
    train = make_train_env("toy", 7, 3, {}, 0).reset()
    evaluation = make_eval_env("toy", 7, 3, {}, 0).reset()
    for k in range(3):
        np.testing.assert_array_equal(train[0][1][k], adapter({}).reset(7000 + k)[0][1])
        np.testing.assert_array_equal(evaluation[0][1][k], adapter({}).reset(57000 + k)[0][1])


def test_same_seed_same_rollout_and_later_resets_continue_the_stream():
    runs = [rollout(make_train_env("toy", 3, 2, TOY_MIXED, 0), 7) for _ in range(2)]
    assert_same(runs[0], runs[1])
    other = rollout(make_train_env("toy", 4, 2, TOY_MIXED, 0), 7)
    assert not np.array_equal(runs[0][-1].obs[1], other[-1].obs[1])
    vec = make_train_env("toy", 3, 2, {}, 0)
    first, second = vec.reset(), vec.reset()
    assert not np.array_equal(first[0][1], second[0][1])  # no re-seeding on later resets


@pytest.mark.parametrize("n_envs,n_workers", [(4, 1), (5, 2)])
def test_subproc_matches_in_process_toy(n_envs, n_workers):
    reference = rollout(make_train_env("toy", 2, n_envs, TOY_MIXED, 0), 7)
    vec = make_train_env("toy", 2, n_envs, TOY_MIXED, n_workers)
    assert isinstance(vec, SubprocVecEnv) and vec.n_workers == n_workers
    assert_same(rollout(vec, 7), reference)
    vec.close()


def test_subproc_matches_in_process_mpe():
    pytest.importorskip("mpe2")
    args = {"scenario": "simple_speaker_listener_v3", "continuous_actions": True, "max_cycles": 4}
    reference = rollout(make_train_env("pettingzoo_mpe", 1, 3, args, 0), 6)
    with make_train_env("pettingzoo_mpe", 1, 3, args, 2) as vec:
        got = rollout(vec, 6)
    assert_same(got, reference)
    assert got[4].infos[0]["episode_done"] and got[4].infos[0]["bad_transition"]


def test_more_workers_than_envs_is_capped():
    with make_train_env("toy", 1, 2, {}, 4) as vec:
        assert vec.n_workers == 2


def test_worker_exception_raises_env_worker_error_with_the_cause():
    vec = make_train_env("toy", 1, 4, {}, 2)
    _, _, avail = vec.reset()
    actions = [np.array([[np.flatnonzero(m)[0]] for m in a]) for a in avail]
    actions[0][3, 0] = np.flatnonzero(avail[0][3] == 0)[0]  # env 3 (worker 1) gets a blocked action
    with pytest.raises(EnvWorkerError) as caught:
        vec.step(actions)
    message = str(caught.value)
    assert "worker 1 of 'toy'" in message and "env 3" in message
    assert "ValueError" in message and "not available" in message
    with pytest.raises(EnvWorkerError, match="closed after an earlier failure"):
        vec.reset()
    assert not any(p.is_alive() for p in vec._procs)


def test_worker_that_cannot_build_its_env_fails_at_start_up():
    factory = EnvFactory("harl.envs.toy.toy_env:NoSuchAdapter", {})
    with pytest.raises(EnvWorkerError, match="while building its envs: AttributeError"):
        SubprocVecEnv(factory, 2, 0, 1, env_name="toy")


def test_killed_worker_is_detected_within_seconds():
    vec = make_train_env("toy", 1, 4, {}, 2)
    _, _, avail = vec.reset()
    os.kill(vec.worker_pids[0], signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(EnvWorkerError, match="worker 0 of 'toy'.*SIGKILL"):
        vec.step([np.array([[np.flatnonzero(m)[0]] for m in a]) for a in avail])
    assert time.monotonic() - start < 10
    vec.close()  # a second close is a no-op


def test_close_returns_even_when_a_worker_is_stopped():
    vec = make_train_env("toy", 1, 2, {}, 2)
    os.kill(vec.worker_pids[1], signal.SIGSTOP)  # a hung worker: alive but never answers
    start = time.monotonic()
    vec.close()
    assert time.monotonic() - start < 10
    assert not any(p.is_alive() for p in vec._procs)


@pytest.mark.parametrize("n_workers", [0, 1])
def test_malformed_actions_are_rejected_with_the_expected_shape(n_workers):
    with make_train_env("toy", 1, 2, {}, n_workers) as vec:
        vec.reset()
        with pytest.raises(ValueError, match="actions for 1 agents but the environment has 2"):
            vec.step([np.zeros((2, 1))])
        with pytest.raises(ValueError, match=r"expected \(n_envs=2, action_dim\)"):
            vec.step([np.zeros(2), np.zeros(2)])


def test_hung_worker_raises_after_the_reply_timeout():
    vec = make_train_env("toy", 1, 4, {}, 2, reply_timeout_s=2.0)
    _, _, avail = vec.reset()
    os.kill(vec.worker_pids[1], signal.SIGSTOP)  # alive, but never answers
    start = time.monotonic()
    with pytest.raises(EnvWorkerError, match="worker 1 of 'toy'.*no reply within env_reply_timeout=2.0 s"):
        vec.step([np.array([[np.flatnonzero(m)[0]] for m in a]) for a in avail])
    assert time.monotonic() - start < 10
    assert not any(p.is_alive() for p in vec._procs)


_STEP_AFTER_A_LINE = """
import sys
import numpy as np
from harl.envs import make_train_env
vec = make_train_env("toy", 1, 4, {}, 2, reply_timeout_s=3.0)
_, _, avail = vec.reset()
print(vec.worker_pids[1], flush=True)
sys.stdin.readline()
vec.step([np.array([[np.flatnonzero(m)[0]] for m in a]) for a in avail])
print("stepped", flush=True)
vec.close()
"""


def test_time_the_trainer_spends_stopped_is_not_a_workers_silence():
    """A run stopped (SIGSTOP, Ctrl-Z) for longer than env_reply_timeout while it waits for a
    worker, then continued, goes on: only the time it waited counts (about 1.5 s of the 3 s
    timeout here: the wait slice the stop fell in, 1 s, then 0.5 s until the worker continues;
    the stop itself lasted 4.5 s, longer than the whole timeout). Before, it stopped with a
    'hung environment' error. The 1.5 s left give the continued worker time to reply on a
    loaded machine."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _STEP_AFTER_A_LINE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        worker = int(proc.stdout.readline())
        os.kill(worker, signal.SIGSTOP)  # the step will wait for this worker
        proc.stdin.write("\n")
        proc.stdin.flush()
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(4.5)
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.5)
        os.kill(worker, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "stepped" in out, err
