"""Networks, distributions, value normalisation and trust-region utilities."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from onpolicy_helpers import make_args

from harl.common.valuenorm import ValueNorm
from harl.models.base.distributions import (
    Categorical,
    DiagGaussian,
    FixedCategorical,
    FixedNormal,
    detach_distribution,
    kl_divergence,
)
from harl.models.base.rnn import RNNLayer
from harl.models.policy_models.stochastic_policy import StochasticPolicy
from harl.models.value_function_models.v_net import VNet
from harl.utils.models_tools import get_grad_norm, huber_loss, update_linear_schedule
from harl.utils.trpo_util import conjugate_gradient, fisher_vector_product_fn, flat_params, update_model

OBS = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
DISCRETE = gym.spaces.Discrete(4)
BOX = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


# ------------------------------------------------------------------ Categorical


def _head_preferring(action: int) -> Categorical:
    """Categorical head whose logits strongly prefer ``action`` whatever the input."""
    head = Categorical(8, 4, "orthogonal_", 0.01)
    with torch.no_grad():
        head.linear.bias.zero_()
        head.linear.bias[action] = 10.0
    return head


def test_unavailable_actions_are_never_sampled_and_have_zero_probability():
    head = _head_preferring(action=2)
    x = torch.randn(2000, 8)
    available = torch.ones(2000, 4)
    available[:, 2] = 0.0  # the preferred action is unavailable everywhere
    available[::2, 0] = 0.0  # and action 0 on every other row

    dist = head(x, available)
    samples = dist.sample()
    assert samples.shape == (2000, 1)
    assert torch.all(available.gather(1, samples) == 1.0)
    assert dist.probs[:, 2].max().item() < 1e-30
    assert dist.probs[::2, 0].max().item() < 1e-30
    assert torch.allclose(dist.probs.sum(-1), torch.ones(2000))
    # deterministic mode picks the best *available* action, not the masked favourite
    mode = dist.mode()
    assert torch.all(available.gather(1, mode) == 1.0)
    assert torch.isfinite(dist.entropy()).all()


def test_policy_respects_available_actions_in_both_modes():
    policy = StochasticPolicy(make_args(), OBS, DISCRETE)
    with torch.no_grad():
        policy.act.action_out.linear.bias[1] = 10.0  # policy's favourite action is 1
    obs = np.random.randn(500, 5).astype(np.float32)
    available = np.ones((500, 4), np.float32)
    available[:, 1] = 0.0
    rnn = np.zeros((500, 1, 16), np.float32)
    masks = np.ones((500, 1), np.float32)
    for deterministic in (False, True):
        actions, log_probs, _ = policy(obs, rnn, masks, available, deterministic)
        assert actions.shape == (500, 1) and log_probs.shape == (500, 1)
        assert not torch.any(actions == 1)
        assert torch.isfinite(log_probs).all()
    log_probs, _, dist = policy.evaluate_actions(obs, rnn, np.ones((500, 1)), masks, available)
    assert dist.probs[:, 1].max().item() < 1e-30
    assert log_probs.max().item() < -1e9  # the unavailable action is (numerically) impossible


# ----------------------------------------------------------------- DiagGaussian


def test_gaussian_std_parametrisation():
    args = make_args(std_x_coef=2.0, std_y_coef=0.7)
    head = DiagGaussian(8, 3, "orthogonal_", 0.01, args)
    # log_std starts at std_x_coef, so std starts at sigmoid(1) * std_y_coef
    assert torch.allclose(head.log_std, torch.full((3,), 2.0))
    dist = head(torch.randn(6, 8))
    expected = torch.sigmoid(torch.tensor(1.0)) * 0.7
    assert torch.allclose(dist.stddev, expected.expand(6, 3))

    with torch.no_grad():
        head.log_std.copy_(torch.tensor([-4.0, 0.0, 40.0]))
    std = head(torch.randn(2, 8)).stddev[0]
    assert torch.allclose(std, torch.sigmoid(torch.tensor([-2.0, 0.0, 20.0])) * 0.7)
    assert std.max() <= 0.7  # bounded by std_y_coef


def test_box_log_probs_are_per_dimension_and_entropy_is_summed():
    policy = StochasticPolicy(make_args(), OBS, BOX)
    obs = np.random.randn(7, 5).astype(np.float32)
    actions, log_probs, _ = policy(obs, np.zeros((7, 1, 16), np.float32), np.ones((7, 1), np.float32))
    assert actions.shape == (7, 3) and log_probs.shape == (7, 3)
    new_log_probs, entropy, dist = policy.evaluate_actions(obs, np.zeros((7, 1, 16)), actions, np.ones((7, 1)))
    assert torch.allclose(new_log_probs, log_probs)
    std = dist.stddev[0]
    assert torch.isclose(entropy, (0.5 + 0.5 * np.log(2 * np.pi) + std.log()).sum())


def test_entropy_ignores_inactive_samples():
    policy = StochasticPolicy(make_args(), OBS, DISCRETE)
    obs = np.random.randn(4, 5).astype(np.float32)
    available = np.ones((4, 4), np.float32)
    available[3, 1:] = 0.0  # a one-action row has zero entropy
    active = np.array([[1.0], [1.0], [1.0], [0.0]], np.float32)
    args = (obs, np.zeros((4, 1, 16)), np.zeros((4, 1)), np.ones((4, 1)), available)
    _, entropy_active, dist = policy.evaluate_actions(*args, active_masks=active)
    assert torch.isclose(entropy_active, dist.entropy()[:3].mean())


# ---------------------------------------------------------------------- RNN


def test_gru_sequence_mode_matches_stepping_and_resets_on_masks():
    layer = RNNLayer(6, 8, recurrent_n=2, initialization_method="orthogonal_")
    steps, seqs = 5, 3
    x = torch.randn(steps * seqs, 6)
    h0 = torch.randn(seqs, 2, 8)
    masks = torch.ones(steps, seqs, 1)
    masks[2, 0] = 0.0  # sequence 0 restarts at step 2
    masks[4, 2] = 0.0  # sequence 2 restarts at step 4

    out_seq, h_seq = layer(x, h0, masks.reshape(-1, 1))

    h, outs = h0, []
    for t in range(steps):
        out_t, h = layer(x.view(steps, seqs, 6)[t], h, masks[t])
        outs.append(out_t)
    assert torch.allclose(out_seq, torch.cat(outs), atol=1e-5)
    assert torch.allclose(h_seq, h, atol=1e-5)

    # After a reset, sequence 0 behaves as if it started fresh at step 2 from a zero state.
    fresh, _ = layer(x.view(steps, seqs, 6)[2:, :1].reshape(-1, 6), torch.zeros(1, 2, 8), torch.ones(3, 1))
    assert torch.allclose(out_seq.view(steps, seqs, 8)[2:, 0], fresh, atol=1e-5)


def test_recurrent_policy_evaluate_matches_rollout_log_probs():
    args = make_args(use_recurrent_policy=True)
    policy = StochasticPolicy(args, OBS, BOX)
    steps, envs = 6, 4
    obs = np.random.randn(steps, envs, 5).astype(np.float32)
    masks = np.ones((steps, envs, 1), np.float32)
    masks[3, 1] = 0.0
    rnn = np.random.randn(envs, 1, 16).astype(np.float32)
    h, all_actions, all_log_probs = torch.as_tensor(rnn), [], []
    with torch.no_grad():
        for t in range(steps):
            actions, log_probs, h = policy(obs[t], h, masks[t])
            all_actions.append(actions)
            all_log_probs.append(log_probs)
        log_probs_seq, _, _ = policy.evaluate_actions(
            obs.reshape(-1, 5), rnn, torch.cat(all_actions), masks.reshape(-1, 1)
        )
    assert torch.allclose(log_probs_seq, torch.cat(all_log_probs), atol=1e-5)


# ------------------------------------------------------------ MLP and VNet


def test_vnet_shapes_and_init():
    net = VNet(make_args(), gym.spaces.Box(-1, 1, (7,)))
    values, rnn = net(np.random.randn(9, 7).astype(np.float32), np.zeros((9, 1, 16)), np.ones((9, 1)))
    assert values.shape == (9, 1) and rnn.shape == (9, 1, 16)
    assert torch.all(net.v_out.bias == 0)
    assert hasattr(net.base, "feature_norm")
    no_norm = VNet(make_args(use_feature_normalization=False), gym.spaces.Box(-1, 1, (7,)))
    assert not hasattr(no_norm.base, "feature_norm")


# ---------------------------------------------------------------- ValueNorm


def test_valuenorm_debiasing_roundtrip_and_state_dict():
    norm = ValueNorm(1)
    batch = np.array([[1.0], [3.0], [5.0], [7.0]], np.float32)
    norm.update(batch)
    mean, var = norm.running_mean_var()
    # debiasing makes the very first estimate the batch statistics despite beta ~ 1
    assert np.isclose(mean.item(), 4.0, atol=1e-3)
    assert np.isclose(var.item(), 5.0, atol=1e-2)

    normalized = norm.normalize(batch)
    assert isinstance(normalized, np.ndarray) and normalized.dtype == np.float32
    assert np.allclose(normalized, (batch - 4.0) / np.sqrt(5.0), atol=1e-3)
    assert np.allclose(norm.denormalize(normalized), batch, atol=1e-4)
    assert torch.is_tensor(norm.normalize(torch.as_tensor(batch)))

    restored = ValueNorm(1)
    restored.load_state_dict(norm.state_dict())
    assert set(norm.state_dict()) == {"running_mean", "running_mean_sq", "debiasing_term"}
    assert np.allclose(restored.denormalize(normalized), batch, atol=1e-4)


# ------------------------------------------------------------ models_tools


def test_huber_grad_norm_and_linear_schedule():
    e = torch.tensor([-3.0, -0.5, 0.0, 2.0])
    assert torch.allclose(huber_loss(e, 1.0), torch.tensor([2.5, 0.125, 0.0, 1.5]))

    layer = torch.nn.Linear(2, 1)
    layer.weight.grad = torch.tensor([[3.0, 0.0]])
    layer.bias.grad = torch.tensor([4.0])
    assert np.isclose(get_grad_norm(layer.parameters()), 5.0)

    opt = torch.optim.Adam(layer.parameters(), lr=1.0)
    update_linear_schedule(opt, 1, 4, 1.0)
    assert opt.param_groups[0]["lr"] == 1.0
    update_linear_schedule(opt, 3, 4, 1.0)
    assert opt.param_groups[0]["lr"] == 0.5


# --------------------------------------------------------------- trpo_util


def test_kl_divergences_match_torch():
    p = torch.distributions.Categorical(logits=torch.randn(5, 4))
    q = torch.distributions.Categorical(logits=torch.randn(5, 4))
    ours = kl_divergence(FixedCategorical(logits=p.logits), FixedCategorical(logits=q.logits))
    assert torch.allclose(ours, torch.distributions.kl_divergence(p, q), atol=1e-6)

    mu_p, mu_q = torch.randn(5, 3), torch.randn(5, 3)
    s_p, s_q = torch.rand(5, 3) + 0.1, torch.rand(5, 3) + 0.1
    ours = kl_divergence(FixedNormal(mu_p, s_p), FixedNormal(mu_q, s_q))
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu_p, s_p), torch.distributions.Normal(mu_q, s_q)
    )
    assert torch.allclose(ours, ref.sum(-1), atol=1e-5)


def test_kl_is_finite_with_masked_actions():
    logits = torch.randn(3, 4)
    logits[:, 0] = -1e10
    kl = kl_divergence(FixedCategorical(logits=logits), FixedCategorical(logits=logits + torch.randn(3, 4) * 0.1))
    assert torch.isfinite(kl).all() and (kl >= 0).all()


def test_fisher_vector_product_is_kl_hessian_and_cg_solves_it():
    head = Categorical(3, 4, "orthogonal_", 1.0)
    x = torch.randn(10, 3)
    params = list(head.parameters())
    theta0 = flat_params(head)

    dist = head(x)
    fvp = fisher_vector_product_fn(kl_divergence(detach_distribution(dist), dist).mean(), params, damping=0.1)

    old_dist = detach_distribution(dist)

    def kl_at(theta: torch.Tensor) -> torch.Tensor:
        weight, bias = theta[:12].view(4, 3), theta[12:]
        return kl_divergence(old_dist, type(dist)(logits=x @ weight.T + bias)).mean()

    hessian = torch.autograd.functional.hessian(kl_at, theta0) + 0.1 * torch.eye(theta0.numel())
    v = torch.randn(theta0.numel())
    assert torch.allclose(fvp(v), hessian @ v, atol=1e-5)

    b = torch.randn(theta0.numel())
    solution = conjugate_gradient(fvp, b, nsteps=50)
    assert torch.allclose(hessian @ solution, b, atol=1e-3)

    update_model(head, theta0 + 1.0)
    assert torch.allclose(flat_params(head), theta0 + 1.0)
