"""Rollout buffers: returns (GAE, time limits, value normalisation) and mini-batch generators."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from onpolicy_helpers import make_args

from harl.common.buffers.on_policy_actor_buffer import OnPolicyActorBuffer
from harl.common.buffers.on_policy_critic_buffer_ep import OnPolicyCriticBufferEP
from harl.common.buffers.on_policy_critic_buffer_fp import OnPolicyCriticBufferFP
from harl.common.buffers.storage import as_stored
from harl.common.valuenorm import ValueNorm

SHARE_OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
OBS = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

# A 3-step trajectory, gamma = 0.9, lambda = 0.8 (gamma * lambda = 0.72).
REWARDS = [1.0, 2.0, 3.0]
VALUES = [0.5, 1.0, 1.5, 2.0]  # V(s_0..s_2) and the bootstrap V(s_3)
# No episode end:  delta = [1 + .9*1 - .5, 2 + .9*1.5 - 1, 3 + .9*2 - 1.5] = [1.4, 2.35, 3.3]
#   A_2 = 3.3, A_1 = 2.35 + .72*3.3 = 4.726, A_0 = 1.4 + .72*4.726 = 4.80272;  R = A + V
RETURNS_NO_DONE = [5.30272, 5.726, 4.8]
# Termination after step 1 (masks[2] = 0): delta_1 = 2 - 1 = 1, no bootstrap and no GAE carry:
#   A_1 = 1.0, A_0 = 1.4 + .72*1.0 = 2.12;  step 2 starts a new episode (A_2 = 3.3)
RETURNS_TERMINATED = [2.62, 2.0, 4.8]
# Truncation after step 1 (masks[2] = 0, bad_masks[2] = 0), proper time limits: the truncated
# step's target is its own prediction (A_1 = 0, R_1 = V_1 = 1.0) and step 0 bootstraps from it:
#   A_0 = delta_0 = 1.4, R_0 = 1.9
RETURNS_TRUNCATED = [1.9, 1.0, 4.8]
# Without GAE and without dones: R_2 = 3 + .9*2 = 4.8, R_1 = 2 + .9*4.8 = 6.32, R_0 = 1 + .9*6.32
RETURNS_MC_NO_DONE = [6.688, 6.32, 4.8]


def _critic_buffer(use_gae=True, use_proper_time_limits=True, done_at=None, truncated=False):
    args = make_args(
        episode_length=3,
        n_rollout_threads=1,
        gamma=0.9,
        gae_lambda=0.8,
        use_gae=use_gae,
        use_proper_time_limits=use_proper_time_limits,
    )
    buf = OnPolicyCriticBufferEP(args, SHARE_OBS)
    for t in range(3):
        ended = done_at == t
        buf.insert(
            np.zeros((1, 4)),
            np.zeros((1, 1, 16)),
            np.array([[VALUES[t]]]),
            np.array([[REWARDS[t]]]),
            masks=np.array([[0.0 if ended else 1.0]]),
            bad_masks=np.array([[0.0 if ended and truncated else 1.0]]),
        )
    return buf


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, RETURNS_NO_DONE),
        ({"done_at": 1}, RETURNS_TERMINATED),
        ({"done_at": 1, "truncated": True}, RETURNS_TRUNCATED),
        # without proper time limits a truncation is treated as a termination
        ({"done_at": 1, "truncated": True, "use_proper_time_limits": False}, RETURNS_TERMINATED),
        ({"use_gae": False}, RETURNS_MC_NO_DONE),
        # Monte-Carlo returns also bootstrap from V at a truncated step: R_1 = V_1, R_0 = 1 + .9*1
        ({"use_gae": False, "done_at": 1, "truncated": True}, [1.9, 1.0, 4.8]),
    ],
)
def test_returns_match_hand_computed_values(kwargs, expected):
    buf = _critic_buffer(**kwargs)
    buf.compute_returns(np.array([[VALUES[3]]], np.float32))
    assert np.allclose(buf.returns[:-1, 0, 0], expected, atol=1e-5)
    assert buf.value_preds[-1, 0, 0] == VALUES[3]


@pytest.mark.parametrize("use_gae", [True, False])
def test_value_normalised_returns_are_in_return_units(use_gae):
    norm = ValueNorm(1)
    norm.update(np.array([[3.0], [-1.0], [10.0]], np.float32))
    buf = _critic_buffer(use_gae=use_gae, done_at=1, truncated=True)
    # the critic outputs normalised values; the buffer stores them as they are
    buf.value_preds[:3] = norm.normalize(np.array(VALUES[:3], np.float32).reshape(3, 1, 1))
    buf.compute_returns(norm.normalize(np.array([[VALUES[3]]], np.float32)), value_normalizer=norm)
    assert np.allclose(buf.returns[:-1, 0, 0], RETURNS_TRUNCATED, atol=1e-4)
    assert np.isclose(buf.returns[-1, 0, 0], VALUES[3], atol=1e-4)


def test_fp_buffer_computes_returns_per_agent():
    args = make_args(episode_length=3, n_rollout_threads=2, gamma=0.9, gae_lambda=0.8)
    buf = OnPolicyCriticBufferFP(args, SHARE_OBS, num_agents=3)
    assert buf.share_obs.shape == (4, 2, 3, 4) and buf.value_preds.shape == (4, 2, 3, 1)
    for t in range(3):
        masks = np.ones((2, 3, 1))
        bad_masks = np.ones((2, 3, 1))
        if t == 1:
            masks[1, 2] = 0.0  # env 1, agent 2 truncated after step 1
            bad_masks[1, 2] = 0.0
        buf.insert(
            np.zeros((2, 3, 4)),
            np.zeros((2, 3, 1, 16)),
            np.full((2, 3, 1), VALUES[t]),
            np.full((2, 3, 1), REWARDS[t]),
            masks,
            bad_masks,
        )
    buf.compute_returns(np.full((2, 3, 1), VALUES[3], np.float32))
    returns = buf.returns[:-1, ..., 0]
    assert np.allclose(returns[:, 1, 2], RETURNS_TRUNCATED, atol=1e-5)
    for env, agent in [(0, 0), (0, 2), (1, 0), (1, 1)]:
        assert np.allclose(returns[:, env, agent], RETURNS_NO_DONE, atol=1e-5)

    batches = list(buf.feed_forward_generator_critic(4))
    assert sum(len(b.share_obs) for b in batches) == 3 * 2 * 3
    chunks = list(buf.recurrent_generator_critic(2, data_chunk_length=3))
    assert chunks[0].share_obs.shape == (3 * 3, 4) and chunks[0].rnn_states_critic.shape == (3, 1, 16)


def _labelled_actor_buffer(act_space=gym.spaces.Discrete(3), obs_device=None, **overrides):
    """Buffer whose entries encode (step, env): obs = [env, step], rnn state = 100 * env + step."""
    args = make_args(episode_length=8, n_rollout_threads=3, **overrides)
    buf = OnPolicyActorBuffer(args, OBS, act_space, obs_device)
    steps, envs = np.meshgrid(np.arange(9), np.arange(3), indexing="ij")
    buf.obs[:] = as_stored(np.stack([envs, steps], axis=-1), buf.obs)
    buf.rnn_states[:] = (100 * envs + steps)[..., None, None]
    buf.actions[:] = steps[:-1, :, None] % 3
    advantages = (10 * envs + steps)[:-1, :, None].astype(np.float32)
    return buf, advantages


def test_feed_forward_generator_covers_every_sample_once():
    torch.manual_seed(0)
    buf, advantages = _labelled_actor_buffer()
    buf.update_factor(np.full((8, 3, 1), 0.5))
    batches = list(buf.feed_forward_generator_actor(advantages, 5))
    assert len(batches) == 5
    seen = np.concatenate([b.obs for b in batches])
    assert sorted(map(tuple, seen.tolist())) == sorted((e, t) for t in range(8) for e in range(3))
    for b in batches:
        assert np.array_equal(b.advantages[:, 0], 10 * b.obs[:, 0] + b.obs[:, 1])
        assert b.available_actions.shape == (len(b.obs), 3) and np.all(b.factor == 0.5)


def test_chunked_recurrent_generator_shapes_and_layout():
    torch.manual_seed(0)
    buf, advantages = _labelled_actor_buffer()
    batches = list(buf.recurrent_generator_actor(advantages, actor_num_mini_batch=2, data_chunk_length=4))
    # 3 envs x 8 steps = 6 chunks of 4 steps -> 2 mini-batches of 3 chunks
    assert len(batches) == 2
    for b in batches:
        assert b.obs.shape == (4 * 3, 2) and b.actions.shape == (12, 1) and b.masks.shape == (12, 1)
        assert b.rnn_states.shape == (3, 1, 16) and b.old_action_log_probs.shape == (12, 1)
        assert b.available_actions.shape == (12, 3) and b.factor is None
        obs = b.obs.reshape(4, 3, 2)  # time-major: (chunk step, chunk, [env, step])
        for i in range(3):
            env, start = obs[0, i]
            assert np.all(obs[:, i, 0] == env) and np.array_equal(obs[:, i, 1], start + np.arange(4))
            assert start % 4 == 0 and b.rnn_states[i, 0, 0] == 100 * env + start
    with pytest.raises(ValueError, match="multiple of data_chunk_length"):
        next(buf.recurrent_generator_actor(advantages, 1, 3))


def test_naive_recurrent_generator_yields_whole_trajectories():
    buf, advantages = _labelled_actor_buffer(act_space=gym.spaces.Box(-1, 1, (2,)))
    batches = list(buf.naive_recurrent_generator_actor(advantages, 3))
    assert len(batches) == 3
    for b in batches:
        assert b.obs.shape == (8, 2) and b.actions.shape == (8, 2) and b.rnn_states.shape == (1, 1, 16)
        assert np.array_equal(b.obs[:, 1], np.arange(8)) and b.rnn_states[0, 0, 0] == 100 * b.obs[0, 0]
        assert b.available_actions is None


def test_insert_after_update_and_concatenate():
    args = make_args(episode_length=2, n_rollout_threads=2)
    buf = OnPolicyActorBuffer(args, OBS, gym.spaces.Discrete(3))
    for t in range(2):
        buf.insert(
            np.full((2, 2), t + 1.0),
            np.full((2, 1, 16), t + 1.0),
            np.full((2, 1), t),
            np.full((2, 1), -1.0),
            np.array([[1.0], [0.0]]),
            np.array([[1.0], [0.0]]),
            np.array([[1.0, 0.0, 1.0]] * 2),
        )
    assert buf.step == 0 and np.all(buf.obs[2] == 2.0) and np.all(buf.actions[1] == 1)
    buf.after_update()
    assert np.all(buf.obs[0] == 2.0) and buf.masks[0, 1, 0] == 0.0 and buf.available_actions[0, 0, 1] == 0.0

    merged = OnPolicyActorBuffer.concatenate([buf, buf, buf])
    assert merged.obs.shape == (3, 6, 2) and merged.available_actions.shape == (3, 6, 3)
    assert merged.n_rollout_threads == 6 and buf.obs.shape == (3, 2, 2)


@pytest.mark.parametrize("generator", ["feed_forward", "chunked", "naive"])
def test_observations_kept_as_tensors_give_the_same_batches(generator):
    """Observations stored as tensors (an environment that hands them out as tensors) come out of
    every generator, and out of concatenate, as tensors holding what numpy storage gives."""
    host, advantages = _labelled_actor_buffer()
    kept, _ = _labelled_actor_buffer(obs_device=torch.device("cpu"))
    assert isinstance(kept.obs, torch.Tensor)
    calls = {
        "feed_forward": lambda buf: buf.feed_forward_generator_actor(advantages, 4),
        "chunked": lambda buf: buf.recurrent_generator_actor(advantages, 2, data_chunk_length=4),
        "naive": lambda buf: buf.naive_recurrent_generator_actor(advantages, 3),
    }
    torch.manual_seed(3)
    expected = list(calls[generator](host))
    torch.manual_seed(3)
    for want, got in zip(expected, calls[generator](kept), strict=True):
        assert isinstance(got.obs, torch.Tensor)
        np.testing.assert_array_equal(got.obs.numpy(), want.obs)
        np.testing.assert_array_equal(got.advantages, want.advantages)
    merged = OnPolicyActorBuffer.concatenate([kept, kept])
    assert isinstance(merged.obs, torch.Tensor) and merged.obs.shape == (9, 6, 2)
