"""Actor updates (HAPPO, HATRPO, HAA2C, MAPPO) and the V critic."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from onpolicy_helpers import make_args

from harl.algorithms.actors import ALGO_REGISTRY, HAA2C, HAPPO, HATRPO, MAPPO
from harl.algorithms.actors.on_policy_base import aggregate_ratio, normalize_advantages
from harl.algorithms.critics import VCritic
from harl.common.buffers.on_policy_actor_buffer import ActorBatch, OnPolicyActorBuffer
from harl.common.buffers.on_policy_critic_buffer_ep import OnPolicyCriticBufferEP
from harl.common.valuenorm import ValueNorm
from harl.utils.models_tools import masked_mean, to_numpy

ON_POLICY_ALGOS = ["haa2c", "happo", "hatrpo", "mappo"]

OBS = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
DISCRETE = gym.spaces.Discrete(4)
BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
HIDDEN = make_args()["hidden_sizes"][-1]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def _batch_with_ratios(algo, ratios, advantages, factor, active=None) -> ActorBatch:
    """A Discrete mini-batch whose stored log-probs make the policy ratio exactly ``ratios``."""
    n = len(ratios)
    obs = np.random.randn(n, 5).astype(np.float32)
    rnn = np.zeros((n, 1, HIDDEN), np.float32)
    actions = np.zeros((n, 1), np.float32)
    masks = np.ones((n, 1), np.float32)
    with torch.no_grad():
        log_probs, _, _ = algo.evaluate_actions(obs, rnn, actions, masks)
    old = log_probs.numpy() - np.log(np.asarray(ratios, np.float32))[:, None]
    active = np.ones((n, 1), np.float32) if active is None else np.asarray(active, np.float32)[:, None]
    column = lambda v: np.asarray(v, np.float32)[:, None]  # noqa: E731
    return ActorBatch(obs, rnn, actions, masks, active, old, column(advantages), None, column(factor))


RATIOS = [0.5, 1.0, 1.5, 2.0]
ADVANTAGES = [1.0, -1.0, 1.0, -1.0]
FACTOR = [2.0, 1.0, 0.5, 1.0]


def test_happo_clipped_surrogate_with_factor_on_hand_made_numbers():
    algo = HAPPO(make_args(entropy_coef=0.0, clip_param=0.2), OBS, DISCRETE)
    # per sample M * min(rA, clip(r, .8, 1.2) A):
    #   2 * min(.5, .8) = 1;  1 * min(-1, -1) = -1;  .5 * min(1.5, 1.2) = .6;  1 * min(-2, -1.2) = -2
    info = algo.update(_batch_with_ratios(algo, RATIOS, ADVANTAGES, FACTOR))
    assert np.isclose(float(info["policy_loss"]), -(1.0 - 1.0 + 0.6 - 2.0) / 4, atol=1e-5)
    assert np.isclose(float(info["ratio"]), np.mean(RATIOS), atol=1e-5)

    # inactive samples leave the mean (use_policy_active_masks)
    algo = HAPPO(make_args(entropy_coef=0.0, clip_param=0.2), OBS, DISCRETE)
    info = algo.update(_batch_with_ratios(algo, RATIOS, ADVANTAGES, FACTOR, active=[1, 1, 1, 0]))
    assert np.isclose(float(info["policy_loss"]), -(1.0 - 1.0 + 0.6) / 3, atol=1e-5)


def test_happo_clipped_samples_give_no_gradient():
    algo = HAPPO(make_args(entropy_coef=0.0, clip_param=0.2), OBS, DISCRETE)
    before = copy.deepcopy(algo.actor.state_dict())
    # r = 1.5 > 1 + eps with A > 0 and r = 0.5 < 1 - eps with A < 0: every sample is clipped
    algo.update(_batch_with_ratios(algo, [1.5, 0.5], [1.0, -1.0], [1.0, 3.0]))
    for name, value in algo.actor.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_haa2c_and_mappo_surrogates_on_hand_made_numbers():
    haa2c = HAA2C(make_args(entropy_coef=0.0), OBS, DISCRETE)
    info = haa2c.update(_batch_with_ratios(haa2c, RATIOS, ADVANTAGES, FACTOR))
    # -mean(M r A) = -(2*.5 - 1 + .5*1.5 - 2) / 4
    assert np.isclose(float(info["policy_loss"]), -(1.0 - 1.0 + 0.75 - 2.0) / 4, atol=1e-5)

    mappo = MAPPO(make_args(entropy_coef=0.0, clip_param=0.2), OBS, DISCRETE)
    info = mappo.update(_batch_with_ratios(mappo, RATIOS, ADVANTAGES, FACTOR))
    # MAPPO ignores the factor: -mean(min(rA, clip(r) A)) = -(.5 - 1 + 1.2 - 2) / 4
    assert np.isclose(float(info["policy_loss"]), -(0.5 - 1.0 + 1.2 - 2.0) / 4, atol=1e-5)


def test_action_aggregation_of_per_dimension_ratios():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[2.0, 0.5]]))
    assert torch.allclose(aggregate_ratio(new, old, "prod"), torch.tensor([[1.0]]))
    assert torch.allclose(aggregate_ratio(new, old, "mean"), torch.tensor([[1.25]]))
    with pytest.raises(ValueError):
        aggregate_ratio(new, old, "sum")


def _rollout_buffer(algo, act_space, args, factor=True) -> tuple[OnPolicyActorBuffer, np.ndarray]:
    """A buffer filled by ``algo``'s own policy on random observations, with random advantages."""
    buf = OnPolicyActorBuffer(args, OBS, act_space)
    steps, envs = args["episode_length"], args["n_rollout_threads"]
    buf.obs[:] = np.random.randn(*buf.obs.shape)
    if buf.available_actions is not None:
        buf.available_actions[:, :, 3] = 0.0
    with torch.no_grad():
        for t in range(steps):
            available = None if buf.available_actions is None else buf.available_actions[t]
            actions, log_probs, rnn = algo.get_actions(buf.obs[t], buf.rnn_states[t], buf.masks[t], available)
            buf.insert(buf.obs[t + 1], to_numpy(rnn), to_numpy(actions), to_numpy(log_probs), np.ones((envs, 1)))
    if factor:
        buf.update_factor(np.random.uniform(0.5, 1.5, (steps, envs, 1)))
    return buf, np.random.randn(steps, envs, 1).astype(np.float32)


def _surrogate_and_dist(actor, buf, advantages):
    """HATRPO's objective E[M r A] on the whole buffer (EP-standardised A), and the distribution."""
    flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
    available = None if buf.available_actions is None else flat(buf.available_actions[:-1])
    with torch.no_grad():
        log_probs, _, dist = actor.evaluate_actions(
            flat(buf.obs[:-1]), flat(buf.rnn_states[:-1]), flat(buf.actions), flat(buf.masks[:-1]), available
        )
    ratio = aggregate_ratio(log_probs, torch.as_tensor(flat(buf.action_log_probs)), "prod")
    adv = torch.as_tensor(flat(normalize_advantages(advantages, buf.active_masks[:-1])))
    return float(masked_mean(torch.as_tensor(flat(buf.factor)) * ratio * adv, None)), dist


@pytest.mark.parametrize("act_space", [DISCRETE, BOX], ids=["discrete", "box"])
def test_hatrpo_step_respects_kl_bound_and_improves_surrogate(act_space):
    args = make_args(episode_length=16, n_rollout_threads=4, kl_threshold=0.01)
    algo = HATRPO(args, OBS, act_space)
    assert algo.actor_optimizer is None
    buf, advantages = _rollout_buffer(algo, act_space, args)
    before_actor = copy.deepcopy(algo.actor)
    surrogate_before, dist_before = _surrogate_and_dist(before_actor, buf, advantages)

    info = algo.train(buf, advantages, "EP")

    surrogate_after, dist_after = _surrogate_and_dist(algo.actor, buf, advantages)
    realised_kl = torch.distributions.kl_divergence(dist_before, dist_after)
    if act_space is BOX:
        realised_kl = realised_kl.sum(-1)
    assert 0.0 < info["kl"] <= args["kl_threshold"]
    assert np.isclose(realised_kl.mean().item(), info["kl"], rtol=1e-3, atol=1e-7)
    assert info["loss_improve"] > 0
    assert surrogate_after > surrogate_before
    assert np.isclose(surrogate_after - surrogate_before, info["loss_improve"], rtol=1e-3, atol=1e-6)


def test_hatrpo_recurrent_step_runs():
    args = make_args(episode_length=8, n_rollout_threads=2, use_recurrent_policy=True, data_chunk_length=4)
    algo = HATRPO(args, OBS, BOX)
    buf, advantages = _rollout_buffer(algo, BOX, args)
    info = algo.train(buf, advantages, "EP")
    assert 0.0 <= info["kl"] <= args["kl_threshold"]


@pytest.mark.parametrize("name", ON_POLICY_ALGOS)
@pytest.mark.parametrize("recurrent", [False, True], ids=["mlp", "rnn"])
def test_every_algorithm_trains_and_reports(name, recurrent):
    args = make_args(use_recurrent_policy=recurrent)
    algo = ALGO_REGISTRY[name](args, OBS, DISCRETE)
    buf, advantages = _rollout_buffer(algo, DISCRETE, args, factor=name != "mappo")
    algo.prep_training()
    info = algo.train(buf, advantages, "FP")
    algo.prep_rollout()
    assert {"policy_loss", "dist_entropy", "actor_grad_norm", "ratio"} <= set(info)
    assert all(np.isfinite(v) for v in info.values())
    algo.lr_decay(2, 4)
    if algo.actor_optimizer is not None:
        assert np.isclose(algo.actor_optimizer.param_groups[0]["lr"], args["lr"] * 0.75)


def test_ha_algorithms_require_the_factor_and_skip_dead_agents():
    args = make_args()
    algo = HAPPO(args, OBS, DISCRETE)
    buf, advantages = _rollout_buffer(algo, DISCRETE, args, factor=False)
    with pytest.raises(RuntimeError, match="update_factor"):
        algo.train(buf, advantages, "EP")
    buf.active_masks[:] = 0.0
    assert algo.train(buf, advantages, "EP") == dict.fromkeys(HAPPO.train_info_keys, 0.0)


@pytest.mark.parametrize("state_type", ["EP", "FP"])
@pytest.mark.parametrize("recurrent", [False, True], ids=["mlp", "rnn"])
def test_mappo_share_param_train_runs(state_type, recurrent):
    args = make_args(use_recurrent_policy=recurrent)
    algo = MAPPO(args, OBS, BOX)
    buffers = [_rollout_buffer(algo, BOX, args, factor=False)[0] for _ in range(3)]
    shape = (8, 3, 1) if state_type == "EP" else (8, 3, 3, 1)
    before = copy.deepcopy(algo.actor.state_dict())
    info = algo.share_param_train(buffers, np.random.randn(*shape).astype(np.float32), 3, state_type)
    assert set(info) == {"policy_loss", "dist_entropy", "actor_grad_norm", "ratio"}
    assert all(np.isfinite(v) for v in info.values())
    assert any(not torch.equal(v, before[k]) for k, v in algo.actor.state_dict().items())


# ------------------------------------------------------------------- critic


def test_value_loss_clipping_and_huber_on_hand_made_numbers():
    values, old, target = torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[2.0]])
    # unclipped error 1; clipped prediction 0 + clip(1, -.2, .2) = .2, error 1.8; the max is taken
    critic = VCritic(make_args(use_huber_loss=False, clip_param=0.2), OBS)
    assert np.isclose(critic.cal_value_loss(values, old, target).item(), 0.5 * 1.8**2)
    critic = VCritic(make_args(use_huber_loss=True, huber_delta=1.0, clip_param=0.2), OBS)
    assert np.isclose(critic.cal_value_loss(values, old, target).item(), 1.8 - 0.5)
    critic = VCritic(make_args(use_huber_loss=True, huber_delta=1.0, use_clipped_value_loss=False), OBS)
    assert np.isclose(critic.cal_value_loss(values, old, target).item(), 0.5)


@pytest.mark.parametrize("use_valuenorm", [False, True])
def test_vcritic_loss_decreases_on_fixed_regression_batch(use_valuenorm):
    args = make_args(
        episode_length=16,
        n_rollout_threads=4,
        critic_lr=1e-2,
        use_clipped_value_loss=False,
        use_huber_loss=False,
        critic_epoch=5,
        critic_num_mini_batch=2,
    )
    space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    critic = VCritic(args, space)
    norm = ValueNorm(1) if use_valuenorm else None
    buf = OnPolicyCriticBufferEP(args, space)
    buf.share_obs[:] = np.random.randn(*buf.share_obs.shape)
    buf.returns[:] = 3.0 + 2.0 * buf.share_obs[..., :1] - buf.share_obs[..., 1:2] ** 2
    losses = [critic.train(buf, norm)["value_loss"] for _ in range(15)]
    assert losses[-1] < 0.3 * losses[0]
    values, _ = critic.get_values(buf.share_obs[0], buf.rnn_states_critic[0], buf.masks[0])
    assert values.shape == (4, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ON_POLICY_ALGOS)
def test_actor_and_critic_train_on_cuda(name):
    # recurrent, so HATRPO's Fisher-vector products go through the GRU's double backward
    args = make_args(use_recurrent_policy=True)
    algo = ALGO_REGISTRY[name](args, OBS, BOX, device="cuda")
    buf, advantages = _rollout_buffer(algo, BOX, args, factor=name != "mappo")
    info = algo.train(buf, advantages, "EP")
    assert all(np.isfinite(v) for v in info.values())

    critic = VCritic(args, OBS, device="cuda")
    norm = ValueNorm(1, device="cuda")
    critic_buf = OnPolicyCriticBufferEP(args, OBS)
    critic_buf.rewards[:] = np.random.randn(*critic_buf.rewards.shape)
    critic_buf.compute_returns(np.zeros((3, 1), np.float32), norm)
    assert np.isfinite(critic.train(critic_buf, norm)["value_loss"])
