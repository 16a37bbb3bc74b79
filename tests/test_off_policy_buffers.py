"""Off-policy replay buffers: n-step targets, termination vs truncation, masks, checkpoints."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from harl.common.buffers.off_policy_buffer_ep import OffPolicyBufferEP
from harl.common.buffers.off_policy_buffer_fp import OffPolicyBufferFP
from harl.envs.base import StepResult

N_AGENTS = 2
SHARE_OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
OBS = [gym.spaces.Box(-np.inf, np.inf, (2,), np.float32), gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)]
ACTS = [gym.spaces.Box(-1.0, 1.0, (2,), np.float32), gym.spaces.Discrete(3)]
GAMMA = 0.5


def make_buffer(cls=OffPolicyBufferEP, n_envs=1, buffer_size=100, n_step=3, batch_size=256, obs_device=None):
    args = dict(buffer_size=buffer_size, batch_size=batch_size, n_step=n_step, gamma=GAMMA, n_rollout_threads=n_envs)
    return cls(args, SHARE_OBS, N_AGENTS, OBS, ACTS, obs_device)


# observations kept as numpy arrays, or as tensors (environments that hand out tensors)
OBS_STORAGE = pytest.mark.parametrize("obs_device", [None, torch.device("cpu")], ids=["numpy", "tensor"])


class Recorder:
    """Feeds a buffer with steps whose observations encode (env, step) so samples can be traced.

    The observation of step ``k`` in env ``e`` is ``100 * e + k`` (agent 0: both entries, agent 1:
    negated); the "final" observation at an episode end is ``1000 + value`` so that the test can
    tell it from the auto-reset one.
    """

    def __init__(self, buffer, n_envs=1):
        self.buffer, self.n_envs, self.k = buffer, n_envs, 0

    def obs(self, k):
        v = np.array([100.0 * e + k for e in range(self.n_envs)], dtype=np.float32)
        return [np.stack([v, v], axis=1), -v[:, None]], np.repeat(v[:, None, None], N_AGENTS, 1).repeat(3, 2)

    def step(self, rewards, dones=None, episode_done=None, bad=None, avail_next=None):
        """One step from ``k`` to ``k + 1``; ``rewards`` (E,) or (E, N); flags per env (E,) or per agent."""
        E, k = self.n_envs, self.k
        obs, share = self.obs(k)
        next_obs, next_share = self.obs(k + 1)
        rewards = np.broadcast_to(np.asarray(rewards, np.float32).reshape(E, -1), (E, N_AGENTS)).copy()
        episode_done = np.zeros(E, bool) if episode_done is None else np.asarray(episode_done, bool)
        dones = np.repeat(episode_done[:, None], N_AGENTS, 1) if dones is None else np.asarray(dones, bool)
        bad = np.zeros(E, bool) if bad is None else np.asarray(bad, bool)
        infos = []
        for e in range(E):
            info = {"bad_transition": bool(bad[e]), "episode_done": bool(episode_done[e])}
            if episode_done[e]:
                info["final_obs"] = [1000.0 + o[e] for o in next_obs]
                info["final_share_obs"] = 1000.0 + next_share[e]
                info["final_available_actions"] = [None, np.array([0.0, 0.0, 1.0], np.float32)]
            infos.append(info)
        avail = [None, np.ones((E, 3), np.float32)]
        next_avail = [None, np.ones((E, 3), np.float32) if avail_next is None else avail_next]
        actions = [np.full((E, 2), k, np.float32), np.full((E, 1), k % 3)]
        result = StepResult(next_obs, next_share, rewards, dones, next_avail, infos)
        self.buffer.insert(share, obs, actions, avail, result)
        self.k += 1


def by_start(batch, env=0):
    """Map each sampled transition's start step (decoded from its observation) to its row index."""
    starts = batch.obs[0][:, 0] - 100.0 * env
    return {int(k): int(np.flatnonzero(starts == k)[0]) for k in np.unique(starts)}


# Episode 1: steps 0-2, rewards 1, 2, 4, ends after step 2. Episode 2: steps 3-6 (still running),
# rewards 8, 16, 32, 64. gamma = 0.5, n_step = 3. Hand-computed (R, gamma^m, next-obs step):
#   t=0: 1 + .5*2 + .25*4 = 3,  .125, final obs after step 2     (window cut at the episode end)
#   t=1: 2 + .5*4 = 4,          .25,  final obs after step 2
#   t=2: 4,                     .5,   final obs after step 2
#   t=3: 8 + .5*16 + .25*32 = 24, .125, obs 6
#   t=4: 16 + 16 + 16 = 48,     .125, obs 7                      (step 6 is the newest row)
#   t=5: 32 + .5*64 = 64,       .25,  obs 7                      (cut at the newest row)
#   t=6: 64,                    .5,   obs 7
EXPECTED = {
    0: (3.0, 0.125, 1003.0),
    1: (4.0, 0.25, 1003.0),
    2: (4.0, 0.5, 1003.0),
    3: (24.0, 0.125, 6.0),
    4: (48.0, 0.125, 7.0),
    5: (64.0, 0.25, 7.0),
    6: (64.0, 0.5, 7.0),
}
REWARDS = [1, 2, 4, 8, 16, 32, 64]


def fill_two_episodes(buffer, truncated):
    rec = Recorder(buffer)
    for k, r in enumerate(REWARDS):
        rec.step([r], episode_done=[k == 2], bad=[truncated and k == 2])
    return rec


@pytest.mark.parametrize("truncated", [False, True])
def test_n_step_targets_with_episode_end_in_window(truncated):
    np.random.seed(0)
    buffer = make_buffer()
    fill_two_episodes(buffer, truncated)
    batch = buffer.sample()
    rows = by_start(batch)
    assert sorted(rows) == list(range(7))
    for t, (ret, disc, next_step) in EXPECTED.items():
        i = rows[t]
        assert batch.rewards[i, 0] == pytest.approx(ret)
        assert batch.gammas[i, 0] == pytest.approx(disc)
        assert batch.next_obs[0][i, 0] == next_step
        assert batch.next_share_obs[i, 0] == next_step
        ends_episode = t <= 2
        assert batch.dones[i, 0] == ends_episode
        # a truncated episode's window ends without termination: the critic bootstraps from the
        # true final state; a terminated one does not bootstrap
        assert batch.terms[i, 0] == (ends_episode and not truncated)


def test_final_available_actions_and_actions_are_stored():
    np.random.seed(1)
    buffer = make_buffer()
    fill_two_episodes(buffer, truncated=False)
    batch = buffer.sample()
    rows = by_start(batch)
    # after the episode end the next availability is the final one, not the reset one
    np.testing.assert_array_equal(batch.next_available_actions[1][rows[2]], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(batch.next_available_actions[1][rows[3]], [1.0, 1.0, 1.0])
    assert batch.available_actions[0] is None and batch.next_available_actions[0] is None
    assert batch.actions[0][rows[4]].tolist() == [4.0, 4.0] and batch.actions[1][rows[4], 0] == 1.0


def test_n_step_one_is_plain_td():
    np.random.seed(2)
    buffer = make_buffer(n_step=1)
    fill_two_episodes(buffer, truncated=False)
    batch = buffer.sample()
    for t, i in by_start(batch).items():
        assert batch.rewards[i, 0] == REWARDS[t] and batch.gammas[i, 0] == GAMMA


def test_windows_stop_at_the_newest_row_after_wrap_around():
    # capacity 5 rows: after 8 steps the rows hold steps 3..7, the write pointer sits inside
    np.random.seed(3)
    buffer = make_buffer(buffer_size=5, n_step=4)
    rec = Recorder(buffer)
    for k in range(8):
        rec.step([2.0**k])
    batch = buffer.sample()
    rows = by_start(batch)
    assert sorted(rows) == [3, 4, 5, 6, 7] and len(buffer) == 5
    # t=5: steps 5, 6, 7 (newest): 32 + .5*64 + .25*128 = 96, gamma^3, next obs 8
    i = rows[5]
    assert (batch.rewards[i, 0], batch.gammas[i, 0], batch.next_obs[0][i, 0]) == (96.0, 0.125, 8.0)
    # t=3: full window 3..6 = 8 + 8 + 8 + 8
    i = rows[3]
    assert (batch.rewards[i, 0], batch.gammas[i, 0], batch.next_obs[0][i, 0]) == (32.0, 0.0625, 7.0)


def test_environments_do_not_mix():
    np.random.seed(4)
    buffer = make_buffer(n_envs=2, n_step=3)
    rec = Recorder(buffer, n_envs=2)
    # env 0 ends after step 0, env 1 never ends
    for k in range(3):
        rec.step([[1.0], [10.0]], episode_done=[k == 0, False])
    batch = buffer.sample()
    env1 = batch.obs[0][:, 0] >= 100
    for i in np.flatnonzero(env1):
        t = int(batch.obs[0][i, 0] - 100)
        assert batch.rewards[i, 0] == pytest.approx(sum(10.0 * GAMMA**j for j in range(3 - t)))
        assert batch.terms[i, 0] == 0
    start0 = np.flatnonzero(~env1 & (batch.obs[0][:, 0] == 0))[0]
    assert (batch.rewards[start0, 0], batch.gammas[start0, 0], batch.terms[start0, 0]) == (1.0, GAMMA, 1.0)


def test_fp_streams_stop_at_each_agents_done_and_mask_dead_agents():
    np.random.seed(5)
    buffer = make_buffer(OffPolicyBufferFP, n_step=3)
    rec = Recorder(buffer)
    # agent 1 dies at step 0 (termination); the episode goes on for agent 0 until step 2
    rec.step([[1.0, 5.0]], dones=[[False, True]])
    rec.step([[2.0, 0.0]], dones=[[False, True]])
    rec.step([[4.0, 0.0]], dones=[[True, True]], episode_done=[True], bad=[True])
    batch = buffer.sample()
    assert batch.share_obs.shape[1:] == (N_AGENTS, 3) and batch.rewards.shape[1:] == (N_AGENTS, 1)
    i = by_start(batch)[0]
    # agent 0: 1 + .5*2 + .25*4, truncated; agent 1: 5, terminated after one step
    np.testing.assert_allclose(batch.rewards[i, :, 0], [3.0, 5.0])
    np.testing.assert_allclose(batch.gammas[i, :, 0], [0.125, 0.5])
    np.testing.assert_array_equal(batch.terms[i, :, 0], [0.0, 1.0])
    # agent 1's next observation is taken at its own window end (after step 0)
    assert batch.next_obs[1][i, 0] == -1.0 and batch.next_obs[0][i, 0] == 1003.0
    # agent 1 was alive when step 0 started, dead for steps 1 and 2
    j = by_start(batch)[1]
    np.testing.assert_array_equal(batch.valid_transitions[i, :, 0], [1.0, 1.0])
    np.testing.assert_array_equal(batch.valid_transitions[j, :, 0], [1.0, 0.0])


def test_valid_transitions_reset_with_the_episode():
    np.random.seed(6)
    buffer = make_buffer(OffPolicyBufferFP)
    rec = Recorder(buffer)
    rec.step([1.0], dones=[[False, True]])
    rec.step([1.0], dones=[[True, True]], episode_done=[True])
    rec.step([1.0])
    batch = buffer.sample()
    np.testing.assert_array_equal(batch.valid_transitions[by_start(batch)[2], :, 0], [1.0, 1.0])


def test_batch_to_tensors():
    buffer = make_buffer(batch_size=4)
    fill_two_episodes(buffer, truncated=False)
    batch = buffer.sample().to("cpu")
    assert batch.share_obs.dtype == torch.float32 and batch.next_available_actions[0] is None
    assert isinstance(batch.obs[1], torch.Tensor) and batch.valid_transitions.shape == (4, N_AGENTS, 1)


@OBS_STORAGE
@pytest.mark.parametrize("cls", [OffPolicyBufferEP, OffPolicyBufferFP])
def test_state_dict_round_trip_saves_only_filled_rows(cls, obs_device):
    buffer = make_buffer(cls, buffer_size=20000, n_envs=2, obs_device=obs_device)
    rec = Recorder(buffer, n_envs=2)
    for k in range(6):
        rec.step([[float(k)], [float(-k)]], episode_done=[k == 3, False])
    blob = io.BytesIO()
    torch.save(buffer.state_dict(), blob)
    assert blob.tell() < buffer.nbytes / 50  # 6 of 10000 rows, plus the file format overhead

    restored = make_buffer(cls, buffer_size=20000, n_envs=2, obs_device=obs_device)
    restored.load_state_dict(torch.load(io.BytesIO(blob.getvalue()), weights_only=True))
    assert (restored.row, restored.filled, len(restored)) == (buffer.row, buffer.filled, 12)
    # the episodes open at save time are closed as truncations: the newest row ends them
    buffer.end_open_episodes()
    np.random.seed(7)
    a = buffer.sample()
    np.random.seed(7)
    b = restored.sample()
    for x, y in zip(a, b):
        for u, v in zip(x if isinstance(x, list) else [x], y if isinstance(y, list) else [y]):
            np.testing.assert_array_equal(u, v)
    newest = np.flatnonzero(np.asarray(b.obs[0][:, 0]) % 100 == 5)
    assert newest.size and np.all(b.dones[newest] == 1) and np.all(b.terms[newest] == 0)


def test_load_state_dict_rejects_another_capacity():
    buffer = make_buffer(buffer_size=100)
    fill_two_episodes(buffer, truncated=False)
    with pytest.raises(ValueError, match="buffer_size"):
        make_buffer(buffer_size=50).load_state_dict(buffer.state_dict())


def test_capacity_is_rounded_to_whole_rows_and_memory_is_preallocated():
    buffer = make_buffer(n_envs=3, buffer_size=100)
    assert buffer.capacity == 33
    # per transition: share 3*4 B, obs (2+1)*4 B, actions (2+1)*4 B, availability 3 B, reward
    # 4 B, end/term 2 B, validity 2 B, final-state slot 8 B; next states are not stored again:
    # only the newest row's (3 envs) and a final-state store (3 entries to start with) of
    # 12 + 12 + 3 B each
    assert buffer.nbytes == 33 * 3 * (12 + 12 + 12 + 3 + 4 + 2 + 2 + 8) + (3 + 3) * (12 + 12 + 3)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample()


@OBS_STORAGE
@pytest.mark.parametrize("cls", [OffPolicyBufferEP, OffPolicyBufferFP])
def test_successor_states_match_the_trajectory_through_wrap_around_resets_and_resume(cls, obs_device):
    """Against a log of what the environments returned: with one-step windows, every sampled
    transition's next state is the step's result (the final state where the env reset), through
    several wrap-arounds, episodes as short as one step, and a save/restore in the middle."""
    rng = np.random.default_rng(0)
    E, buffer = 3, make_buffer(cls, n_envs=3, buffer_size=3 * 17, n_step=1, batch_size=512, obs_device=obs_device)
    expected: dict[float, tuple[float, float, float]] = {}  # obs of agent 1 -> next obs, share, avail
    obs = rng.normal(size=E).astype(np.float32)
    for step in range(200):
        reset = rng.random(E) < 0.3
        result_obs = rng.normal(size=E).astype(np.float32)
        final = rng.normal(size=E).astype(np.float32)
        infos = [{"bad_transition": False, "episode_done": bool(reset[e])} for e in range(E)]
        for e in np.flatnonzero(reset):
            infos[e].update(
                final_obs=[np.full(2, final[e]), final[e : e + 1]],
                final_share_obs=np.full((N_AGENTS, 3), final[e]),
                final_available_actions=[None, np.array([1.0, 0.0, 0.0], np.float32)],
            )
        next_avail = np.zeros((E, 3), np.float32)
        next_avail[:, 2] = 1.0
        result = StepResult(
            [np.stack([result_obs] * 2, 1), result_obs[:, None]],
            np.repeat(result_obs[:, None, None], N_AGENTS, 1).repeat(3, 2),
            np.zeros((E, N_AGENTS), np.float32),
            np.repeat(reset[:, None], N_AGENTS, 1),
            [None, next_avail],
            infos,
        )
        buffer.insert(
            np.repeat(obs[:, None, None], N_AGENTS, 1).repeat(3, 2),
            [np.stack([obs] * 2, 1), obs[:, None]],
            [np.zeros((E, 2), np.float32), np.zeros((E, 1))],
            [None, np.ones((E, 3), np.float32)],
            result,
        )
        for e in range(E):
            expected[float(obs[e])] = (final[e], 0.0) if reset[e] else (result_obs[e], 2.0)
        obs = result_obs
        if step == 120:  # checkpoint and restore mid-episode: the open episodes end there
            restored = make_buffer(cls, n_envs=3, buffer_size=3 * 17, n_step=1, batch_size=512, obs_device=obs_device)
            restored.load_state_dict(torch.load(io.BytesIO(_saved(buffer)), weights_only=True))
            buffer = restored
            obs = rng.normal(size=E).astype(np.float32)  # the environments were reset on resume
        batch = buffer.sample()
        assert isinstance(batch.obs[1], torch.Tensor) == (obs_device is not None)
        for b in range(len(batch.obs[1])):
            want_obs, want_avail_index = expected[float(batch.obs[1][b, 0])]
            assert batch.next_obs[1][b, 0] == want_obs and batch.next_obs[0][b, 1] == want_obs
            share = batch.next_share_obs[b] if cls is OffPolicyBufferEP else batch.next_share_obs[b, 1]
            assert np.all(np.asarray(share) == want_obs)
            assert batch.next_available_actions[1][b, int(want_avail_index)] == 1.0
    assert buffer.finals.capacity >= 4  # grew past its initial 3 entries


def _saved(buffer) -> bytes:
    blob = io.BytesIO()
    torch.save(buffer.state_dict(), blob)
    return blob.getvalue()
