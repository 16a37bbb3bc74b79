"""Bi-DexterousHands (``--env dexhands``) without Isaac Gym: the missing-package message, and the
adapter driven end to end against a fake of the benchmark's multi-agent vectorised task."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from e2e_helpers import TINY_OFF_POLICY, TINY_ON_POLICY, TINY_PER_ALGO, heavy_import_recorder, read_progress, train

from harl.envs import EnvNotInstalledError, check_env_args, make_train_env
from harl.envs.dexhands import dexhands_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Space:
    def __init__(self, size: int) -> None:
        self.shape = (size,)


class FakeMultiVecTask:
    """The benchmark's ``MultiVecTaskPython`` as its README documents it: ``step`` takes the
    agents' actions (``actions[i]`` is agent i's ``(E, a_i)``, concatenated in order) and returns
    torch tensors obs ``(E, N, d)``, state
    ``(E, N, s)``, rewards ``(E, N, 1)``, dones ``(E, N)``, infos and None; an environment whose
    ``reset_buf`` is set is reset at the start of its next step. Here each hand moves a point by
    its mean action; the episode ends after ``episode_length`` steps or when the point leaves
    [-3, 3]; the reward is minus the distance from 1."""

    num_agents = 2

    def __init__(self, n_envs: int, episode_length: int, seed: int) -> None:
        self.num_envs, self.episode_length = n_envs, episode_length
        self.observation_space = [_Space(5), _Space(5)]
        self.share_observation_space = [_Space(7), _Space(7)]
        self.action_space = [_Space(3), _Space(4)]
        self.rl_device = "cpu"
        self.generator = torch.Generator().manual_seed(seed)
        self.points = torch.zeros(n_envs, 2)
        self.progress = torch.zeros(n_envs, dtype=torch.long)
        self.reset_buf = torch.ones(n_envs, dtype=torch.long)
        self.actions_seen: list[torch.Tensor] = []

    def _reset_done(self) -> None:
        ids = self.reset_buf.nonzero().flatten()
        self.points[ids] = torch.rand(len(ids), 2, generator=self.generator) - 0.5
        self.progress[ids] = 0
        self.reset_buf[ids] = 0

    def _observe(self):
        e = self.num_envs
        features = torch.cat([self.points, self.progress[:, None].float()], 1)  # (E, 3)
        obs = torch.stack([torch.cat([features, torch.full((e, 2), float(i))], 1) for i in range(2)], 1)
        state = torch.cat([features, self.points**2, torch.ones(e, 2)], 1)
        return obs, torch.stack([state, state], 1)

    def reset(self):
        self.reset_buf[:] = 1
        self._reset_done()
        obs, state = self._observe()
        return obs, state, None

    def step(self, actions):
        joint = torch.hstack(list(actions))
        assert joint.shape == (self.num_envs, 7)
        self.actions_seen.append(joint)
        self._reset_done()
        self.points[:, 0] += joint[:, :3].mean(1)
        self.points[:, 1] += joint[:, 3:].mean(1)
        self.progress += 1
        out_of_range = (self.points.abs() > 3).any(1)
        self.reset_buf = (out_of_range | (self.progress >= self.episode_length)).long()
        reward = -(self.points - 1).norm(dim=1)
        obs, state = self._observe()
        return obs, state, reward[:, None, None].expand(-1, 2, 1), self.reset_buf[:, None].expand(-1, 2), [], None


@pytest.fixture
def fake_benchmark(monkeypatch):
    built: list[FakeMultiVecTask] = []

    def build(task, n_envs, episode_length, seed):
        built.append(FakeMultiVecTask(n_envs, episode_length, seed))
        return built[-1]

    monkeypatch.setattr(dexhands_env, "missing_requirements", lambda: [])
    monkeypatch.setattr(dexhands_env, "load_isaacgym", lambda: None)
    monkeypatch.setattr(dexhands_env, "build_task", build)
    return built


def test_missing_isaac_gym_stops_train_py_in_seconds(tmp_path):
    env, imported = heavy_import_recorder(str(tmp_path / "probe"))
    log_dir = tmp_path / "results"
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "examples/train.py", "--algo", "happo", "--env", "dexhands", "--log_dir", str(log_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=env,
    )
    elapsed = time.monotonic() - start
    print(f"missing Isaac Gym: examples/train.py exited {out.returncode} after {elapsed:.2f} s")
    assert out.returncode == 1
    # "in seconds" on any machine: it stops before importing torch (well under a second when
    # idle); the wall-clock bound is only a hang detector, generous for a loaded or cold machine
    with open(imported, encoding="utf-8") as file:
        assert file.read() == ""  # the heavy packages imported before the error: none
    assert elapsed < 30
    assert "Isaac Gym" in out.stderr and "DexterousHands" in out.stderr and "Traceback" not in out.stderr
    assert not log_dir.exists() or not os.listdir(log_dir)


def test_bad_settings_are_named_before_the_requirements():
    with pytest.raises(ValueError, match="unknown task 'ShadowHandJuggle'; valid: ShadowHandOver"):
        check_env_args("dexhands", {"task": "ShadowHandJuggle"})
    with pytest.raises(ValueError, match="hands_episode_length must be a positive integer"):
        check_env_args("dexhands", {"hands_episode_length": 0})
    with pytest.raises(EnvNotInstalledError, match="needs NVIDIA Isaac Gym"):
        check_env_args("dexhands", {})


def test_vector_passes_the_batch_through_and_marks_truncations(fake_benchmark):
    envs = make_train_env("dexhands", 1, 4, {"task": "ShadowHandOver", "hands_episode_length": 3}, None)
    task = fake_benchmark[0]
    assert (envs.n_envs, envs.n_agents) == (4, 2)
    assert [s.shape for s in envs.observation_spaces] == [(5,), (5,)]
    assert envs.share_observation_spaces[0].shape == (7,) and [s.shape for s in envs.action_spaces] == [(3,), (4,)]
    obs, share_obs, avail = envs.reset()
    assert [o.shape for o in obs] == [(4, 5), (4, 5)] and share_obs.shape == (4, 2, 7) and avail == [None, None]
    actions = [np.full((4, 3), 5.0, np.float32), np.zeros((4, 4), np.float32)]
    for step in range(1, 4):
        result = envs.step(actions)
        assert float(task.actions_seen[-1][:, :3].max()) == 1.0  # clipped to the action space
    # after 3 steps of +1 every point is at 3.x: ended by the time limit -> truncation
    assert result.dones.all() and all(info["bad_transition"] and info["episode_done"] for info in result.infos)
    np.testing.assert_array_equal(torch.stack(result.infos[0]["final_obs"]), torch.stack([o[0] for o in result.obs]))
    # observations stay tensors where the simulator put them; rewards and ends come to the host
    assert envs.observation_device == torch.device(task.rl_device)
    assert all(isinstance(o, torch.Tensor) and o.dtype == torch.float32 for o in [*result.obs, result.share_obs])
    assert isinstance(result.rewards, np.ndarray) and result.rewards.shape == (4, 2)
    result = envs.step([np.zeros((4, 3), np.float32), np.full((4, 4), -5.0, np.float32)])
    assert not result.dones.any()  # the new episodes started
    envs.close()


def test_termination_before_the_limit_is_not_a_truncation(fake_benchmark):
    envs = make_train_env("dexhands", 1, 2, {"task": "ShadowHandOver", "hands_episode_length": 50}, None)
    envs.reset()
    for _ in range(4):
        result = envs.step([np.ones((2, 3), np.float32), np.zeros((2, 4), np.float32)])
        if result.dones.any():
            break
    assert result.dones.all() and not any(info["bad_transition"] for info in result.infos)


@pytest.mark.parametrize("algo", ["happo", "haqo"])
def test_training_end_to_end_on_the_fake_task(tmp_path, fake_benchmark, algo):
    tiny = {**(TINY_ON_POLICY if algo == "happo" else TINY_OFF_POLICY), **TINY_PER_ALGO.get(algo, {})}
    runner = train(
        algo,
        "dexhands",
        str(tmp_path),
        {**tiny, "num_env_steps": 80, "hands_episode_length": 10, "task": "ShadowHandPen"},
    )
    rows = read_progress(runner.run_dir)
    assert int(rows[-1]["env_steps"]) == 80 and rows[-1]["eval_episode_return"] != ""
    assert type(runner.envs).__name__ == "DexHandsVecEnv"
    assert all(t.actions_seen for t in fake_benchmark)
    # the buffers keep the observations as tensors on the training device
    stored = (
        [runner.actor_buffer[0].obs, runner.critic_buffer.share_obs]
        if algo == "happo"
        else [runner.buffer.obs[0], runner.buffer.share_obs]
    )
    assert all(isinstance(x, torch.Tensor) and x.device == runner.device for x in stored)


@pytest.mark.parametrize("algo", ["happo", "haqo"])
def test_observations_kept_on_the_device_train_as_host_copies_would(tmp_path, monkeypatch, fake_benchmark, algo):
    """The same run with the observations copied to numpy on the host (what every other
    environment hands out) ends with the same weights: keeping them as tensors changes where they
    live, not what is computed. Same up to float32 rounding: the two runs feed the same numbers
    from differently allocated (and aligned) memory, which BLAS kernels may round differently on
    other CPUs; a 1-ulp change of the observations moves the final weights by ~1e-7 here, while
    observations gone wrong (features reversed) move them by ~4e-3."""
    tiny = {**(TINY_ON_POLICY if algo == "happo" else TINY_OFF_POLICY), **TINY_PER_ALGO.get(algo, {})}
    settings = {**tiny, "num_env_steps": 80, "hands_episode_length": 10, "task": "ShadowHandPen", "use_eval": False}
    kept = train(algo, "dexhands", str(tmp_path / "kept"), settings)
    build = dexhands_env.DexHandsVecEnv.__init__

    def host_copies(self, *args):
        build(self, *args)
        self.observation_device = None  # the buffers store numpy arrays

    monkeypatch.setattr(dexhands_env.DexHandsVecEnv, "__init__", host_copies)
    monkeypatch.setattr(dexhands_env.DexHandsVecEnv, "_observations", lambda self, x: self._host(x))
    host = train(algo, "dexhands", str(tmp_path / "host"), settings)
    assert isinstance(host.envs.reset()[0][0], np.ndarray)
    for a, b in zip(kept.unique_actors(), host.unique_actors(), strict=True):
        for p, q in zip(a.actor.parameters(), b.actor.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "missing, wording",
    [
        (["NVIDIA Isaac Gym (...)"], "It is not on PyPI"),
        (["NVIDIA Isaac Gym (...)", "the Bi-DexterousHands package (...)"], "Neither is on PyPI"),
    ],
)
def test_the_message_counts_what_is_missing(monkeypatch, missing, wording):
    monkeypatch.setattr(dexhands_env, "missing_requirements", lambda: missing)
    with pytest.raises(EnvNotInstalledError, match=wording):
        check_env_args("dexhands", {})
