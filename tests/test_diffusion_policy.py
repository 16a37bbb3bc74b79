"""Diffusion actor (and the Gaussian ablation): schedules, sampler, action codec, losses, path KL."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from harl.models.base.distributions import masked_kl
from harl.models.policy_models.candidate_policy import ActionCodec
from harl.models.policy_models.denoiser import beta_schedule, sinusoidal_embedding
from harl.models.policy_models.diffusion_policy import DiffusionPolicy, chain_log_probs
from harl.models.policy_models.gaussian_candidate_policy import GaussianCandidatePolicy

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
BOX = gym.spaces.Box(np.array([0.0, -2.0], np.float32), np.array([1.0, 2.0], np.float32))
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def make_args(**overrides):
    args = dict(
        hidden_sizes=[32, 32],
        activation_func="relu",
        use_feature_normalization=True,
        initialization_method="orthogonal_",
        gain=0.01,
        n_timesteps=8,
        beta_schedule="vp",
        beta_min=0.1,
        beta_max=10.0,
        time_embed_dim=16,
        eval_samples=16,
        prediction="eps",
    )
    args.update(overrides)
    return args


class StepTableDenoiser(nn.Module):
    """A test noise predictor whose step dependence is one number per step, ``table[k]``, passed to
    :meth:`head` as the step's condition (the observation is ignored)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)

    def context(self, obs):
        return obs.new_zeros(*obs.shape[:-1], 1)

    def step_conditions(self, obs):
        return self.table.view(-1, *([1] * obs.dim())).expand(-1, *obs.shape[:-1], 1)

    def forward(self, x, k, context):
        return self.head(x, self.table[k].unsqueeze(-1))


class AffineDenoiser(StepTableDenoiser):
    """``eps(x_t, t) = x_t / sqrt(1 - abar_t) + b``: with ``b = 0`` the predicted ``x_0`` is 0
    exactly; with ``b`` it is ``-sqrt(1/abar_t - 1) b``, inside [-1, 1] when ``b`` is small."""

    def __init__(self, alphas_cumprod: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__((1.0 - alphas_cumprod).rsqrt())
        self.register_buffer("b", b)

    def head(self, x, scale):
        return scale * x + self.b


class DiracDenoiser(StepTableDenoiser):
    """The exact noise predictor of data concentrated at ``a0``:
    ``eps = (x_t - sqrt(abar_t) a0) / sqrt(1 - abar_t)``."""

    def __init__(self, alphas_cumprod: torch.Tensor, a0: torch.Tensor) -> None:
        super().__init__(alphas_cumprod)
        self.register_buffer("a0", a0)

    def data_point(self, x):
        """Where the data of the chains ``x`` is concentrated."""
        return self.a0

    def head(self, x, abar):
        return (x - abar.sqrt() * self.data_point(x)) / (1.0 - abar).sqrt()


# --- schedules and embedding ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["vp", "linear", "cosine"])
@pytest.mark.parametrize("steps", [2, 5, 8, 16, 100])
def test_schedules_are_monotone_and_alphas_cumprod_in_unit_interval(name, steps):
    betas = beta_schedule(name, steps, 0.1, 10.0)
    abar = torch.cumprod(1.0 - betas, 0)
    assert betas.shape == (steps,)
    assert ((betas > 0) & (betas < 1)).all()
    assert (betas[1:] >= betas[:-1]).all()
    assert ((abar > 0) & (abar < 1)).all()
    assert (abar[1:] < abar[:-1]).all()


def test_vp_schedule_integrates_the_sde_exactly():
    """prod_t (1 - beta_t) = exp(-int_0^1 beta(tau) dtau) = exp(-(beta_min + beta_max) / 2)."""
    for steps in (3, 8, 50):
        abar_T = torch.prod(1.0 - beta_schedule("vp", steps, 0.1, 10.0))
        assert abar_T.item() == pytest.approx(math.exp(-5.05), rel=1e-9)


def test_linear_schedule_matches_ddpm_at_1000_steps():
    betas = beta_schedule("linear", 1000, 0.1, 20.0)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


def test_unknown_schedule_and_too_few_steps_raise():
    with pytest.raises(ValueError, match="beta_schedule"):
        beta_schedule("sigmoid", 8, 0.1, 10.0)
    with pytest.raises(ValueError, match="n_timesteps"):
        DiffusionPolicy(make_args(n_timesteps=1), OBS, BOX)


def test_sinusoidal_embedding_distinguishes_steps():
    emb = sinusoidal_embedding(torch.arange(1, 9), 16)
    assert emb.shape == (8, 16)
    assert torch.cdist(emb, emb).add(torch.eye(8)).min() > 0.1
    with pytest.raises(ValueError):
        sinusoidal_embedding(torch.arange(3), 7)


# --- action codec ---------------------------------------------------------------------------


def test_box_codec_maps_onto_bounds():
    codec = ActionCodec(BOX)
    x = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
    assert torch.allclose(codec.to_env(x), torch.tensor([[0.0, -2.0], [1.0, 2.0], [0.5, 0.0]]))
    assert torch.equal(codec.to_critic(x), codec.to_env(x))
    assert torch.equal(codec.target(x), x)
    u = codec.uniform((1000,), None, torch.device("cpu"))
    assert u.shape == (1000, 2) and u.min() >= -1 and u.max() <= 1 and u.std() > 0.5
    with pytest.raises(ValueError, match="finite"):
        ActionCodec(gym.spaces.Box(-np.inf, np.inf, (2,)))


def test_discrete_codec_never_decodes_an_unavailable_action():
    """Property over random masks: decoded actions, one-hots, targets and uniform draws only
    ever use available actions, even where the scores prefer unavailable ones."""
    gen = torch.Generator().manual_seed(0)
    for trial in range(200):
        n = int(torch.randint(2, 8, (1,), generator=gen))
        codec = ActionCodec(gym.spaces.Discrete(n))
        avail = (torch.rand(16, n, generator=gen) < 0.5).float()
        avail[torch.arange(16), torch.randint(n, (16,), generator=gen)] = 1.0  # at least one
        scores = torch.randn(5, 16, n, generator=gen) + 10.0 * (1.0 - avail)  # lure to unavailable
        index = codec.to_env(scores, avail).squeeze(-1)
        assert index.shape == (5, 16) and index.dtype == torch.int64
        assert avail.expand(5, -1, -1).gather(-1, index.unsqueeze(-1)).eq(1).all(), trial
        onehot = codec.to_critic(scores, avail)
        assert onehot.sum(-1).eq(1).all() and (onehot * (1 - avail)).eq(0).all()
        target = codec.target(scores, avail)
        assert set(target.unique().tolist()) <= {-1.0, 1.0} and ((target + 1) / 2 * (1 - avail)).eq(0).all()
        uniform = codec.uniform((7, 16), avail.bool(), torch.device("cpu"))
        assert ((uniform + 1) / 2 * (1 - avail)).eq(0).all() and uniform.eq(1).sum(-1).eq(1).all()


def test_discrete_uniform_covers_the_available_actions_evenly():
    codec = ActionCodec(gym.spaces.Discrete(4))
    avail = torch.tensor([1.0, 0.0, 1.0, 1.0])
    counts = codec.uniform((6000,), avail, torch.device("cpu")).eq(1).float().sum(0)
    assert counts[1] == 0 and torch.allclose(counts[[0, 2, 3]] / 6000, torch.full((3,), 1 / 3), atol=0.03)


# --- sampler --------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("policy_cls", [DiffusionPolicy, GaussianCandidatePolicy])
def test_sampling_shapes_and_bounds_with_leading_dims(policy_cls, device):
    torch.manual_seed(0)
    policy = policy_cls(make_args(), OBS, BOX, device)
    obs = torch.randn(3, 5, 3, device=device)
    sample = policy.sample(obs, n=4, record=True)
    assert sample.x.shape == sample.target.shape == (4, 3, 5, 2)
    assert sample.x.device.type == device
    assert sample.x.abs().max() <= 1.0
    actions = policy.codec.to_env(sample.x)
    assert (actions >= torch.as_tensor(BOX.low, device=device)).all()
    assert (actions <= torch.as_tensor(BOX.high, device=device)).all()
    assert policy.kl_from_record(obs, sample.record).shape == (3, 5)


def test_one_denoiser_call_per_denoising_step_for_all_candidates():
    policy = DiffusionPolicy(make_args(n_timesteps=6), OBS, BOX)
    calls = []
    # every evaluation of the network ends in its output layer
    policy.denoiser.output_layer.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    sample = policy.sample(torch.randn(11, 3), n=7, record=True)
    assert calls == [torch.Size([7, 11, 2])] * 6
    calls.clear()
    policy.kl_from_record(torch.randn(11, 3), sample.record)
    assert calls == [torch.Size([11, 6, 2])]  # every step of the chain in one call
    calls.clear()
    policy.surrogate_losses(torch.randn(11, 3), sample.target[:2], None, 3)
    assert calls == [torch.Size([5, 11, 2])]  # candidates and entropy samples together


@pytest.mark.parametrize("schedule", ["vp", "linear", "cosine"])
def test_exact_denoiser_of_a_dirac_samples_it_and_has_zero_loss(schedule):
    """With the exact noise predictor of data at ``a0``: evaluation returns ``a0``, samples are
    ``a0`` plus the last step's ``N(0, sigma_2^2)`` floor, and the denoising loss is zero at
    ``a0`` and positive elsewhere."""
    torch.manual_seed(0)
    policy = DiffusionPolicy(make_args(beta_schedule=schedule), OBS, BOX)
    a0 = torch.tensor([0.3, -0.7])
    policy.denoiser = DiracDenoiser(policy.alphas_cumprod, a0)
    x = policy.eval_actions(torch.zeros(50, 3))
    assert torch.allclose(x, a0.expand_as(x), atol=1e-5)
    x = policy.sample(torch.zeros(4000, 3)).x[0, :, 0]  # 0.3 is far enough from the bounds
    sigma = policy.sigma[0].item()
    assert sigma > 0 and x.mean().item() == pytest.approx(0.3, abs=0.1 * sigma)
    assert x.std().item() == pytest.approx(sigma, rel=0.1)
    context = policy.denoiser.context(torch.zeros(50, 3))
    assert policy.denoising_loss(a0.expand(4, 50, 2), context).max() < 1e-9
    assert policy.denoising_loss(torch.zeros(4, 50, 2), context).min() > 0


class DiracActionDenoiser(DiracDenoiser):
    """With ``prediction: x0``, the exact predictor of data at ``a0`` is ``a0`` itself."""

    def head(self, x, abar):
        return self.data_point(x).expand_as(x)


@pytest.mark.parametrize("schedule", ["vp", "cosine"])
def test_exact_action_predictor_of_a_dirac_samples_it_and_has_zero_loss(schedule):
    """``prediction: x0``: the same sampler and floor as the noise form, the loss on the action."""
    torch.manual_seed(0)
    policy = DiffusionPolicy(make_args(beta_schedule=schedule, prediction="x0"), OBS, BOX)
    a0 = torch.tensor([0.3, -0.7])
    policy.denoiser = DiracActionDenoiser(policy.alphas_cumprod, a0)
    x = policy.eval_actions(torch.zeros(50, 3))
    assert torch.allclose(x, a0.expand_as(x), atol=1e-5)
    x = policy.sample(torch.zeros(4000, 3)).x[0, :, 0]
    sigma = policy.sigma[0].item()
    assert x.mean().item() == pytest.approx(0.3, abs=0.1 * sigma)
    assert x.std().item() == pytest.approx(sigma, rel=0.1)
    context = policy.denoiser.context(torch.zeros(50, 3))
    assert policy.denoising_loss(a0.expand(4, 50, 2), context).max() < 1e-12
    assert policy.denoising_loss(torch.zeros(4, 50, 2), context).min() == pytest.approx((0.09 + 0.49) / 2)


def test_unknown_prediction_raises():
    with pytest.raises(ValueError, match="prediction must be 'auto', 'eps' or 'x0'"):
        DiffusionPolicy(make_args(prediction="v"), OBS, BOX)


def test_auto_prediction_is_x0_on_discrete_and_eps_on_box():
    assert DiffusionPolicy(make_args(prediction="auto"), OBS, gym.spaces.Discrete(4)).predicts_x0
    assert not DiffusionPolicy(make_args(prediction="auto"), OBS, BOX).predicts_x0


class TwoCodeDenoiser(DiracDenoiser):
    """Exact noise predictor of a Dirac at ``codes[0]`` for the first ``n_first`` chains of a pass
    and at ``codes[1]`` for the rest (chains are the leading dimension of ``x``)."""

    def __init__(self, alphas_cumprod: torch.Tensor, codes: torch.Tensor, n_first: int) -> None:
        super().__init__(alphas_cumprod, codes[0])
        self.register_buffer("codes", codes)
        self.n_first = n_first

    def data_point(self, x):
        chain = torch.arange(x.shape[0]).view(-1, *([1] * (x.dim() - 1)))
        return torch.where(chain < self.n_first, self.codes[0], self.codes[1])


def test_discrete_evaluation_executes_the_most_frequent_available_action():
    """Of ``eval_samples = 16`` chains, 6 end at action 1 and 10 at action 3: evaluation executes
    3, the mode; with 3 unavailable, every chain's arg-max is 1 and evaluation executes it."""
    torch.manual_seed(0)
    policy = DiffusionPolicy(make_args(eval_samples=16), OBS, gym.spaces.Discrete(4))
    codes = torch.tensor([[-1.0, 1.0, -0.9, -1.0], [-1.0, 0.9, -1.0, 1.0]])
    policy.denoiser = TwoCodeDenoiser(policy.alphas_cumprod, codes, n_first=6)
    obs = torch.zeros(5, 3)
    assert (policy.codec.to_env(policy.eval_actions(obs)) == 3).all()
    available = torch.tensor([1.0, 1.0, 1.0, 0.0]).expand(5, 4)
    assert (policy.codec.to_env(policy.eval_actions(obs, available), available) == 1).all()


def test_discrete_samples_favour_no_index():
    """An untrained actor's chains end with several scores above 1 in about a third of samples;
    clipping them would tie those scores and the arg-max would pick the lowest index (before the
    fix: action 0 at 0.18, action 8 at 0.07)."""
    torch.manual_seed(0)
    policy = DiffusionPolicy(make_args(hidden_sizes=[64, 64]), OBS, gym.spaces.Discrete(9))
    actions = policy.codec.index(policy.sample(torch.randn(512, 3), n=16, targets=False).x, None)
    freq = torch.bincount(actions.flatten(), minlength=9) / actions.numel()
    assert freq.min() > 0.09 and freq.max() < 0.135, freq


# --- action-space KL ------------------------------------------------------------------------


def test_chain_log_probs_give_the_exact_kl_of_known_categoricals():
    """Actions drawn from known categoricals by inverse CDF on shared uniforms (common random
    numbers, as the chains share their noise): the estimated KL approaches the exact one, and an
    unavailable action gets probability 0."""
    torch.manual_seed(0)
    available = torch.tensor([[True, True, True, False], [True, True, False, True]])
    p_old = torch.tensor([[0.6, 0.3, 0.1, 0.0], [0.25, 0.25, 0.0, 0.5]])
    p_new = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.4, 0.2, 0.0, 0.4]])
    u = torch.rand(2, 40000, 1)
    draw = lambda p: (u > p.cumsum(-1).unsqueeze(1)).sum(-1).clamp(max=3)  # noqa: E731
    log_old, log_new = chain_log_probs(draw(p_old), available), chain_log_probs(draw(p_new), available)
    assert torch.isneginf(log_old[~available]).all()
    exact = masked_kl(p_old.log(), p_new.log(), available)
    assert torch.allclose(masked_kl(log_old, log_new, available), exact, rtol=0.05)


def test_action_kl_is_zero_for_an_identical_actor_and_below_the_path_kl():
    """Same noise, same actor: exactly 0. A perturbed actor: positive, and (data processing) below
    the path KL of the same pair, which bounds the KL of the actions."""
    torch.manual_seed(0)
    old = DiffusionPolicy(make_args(), OBS, gym.spaces.Discrete(4))
    obs = torch.randn(16, 3)
    available = torch.ones(16, 4)
    available[:8, 0] = 0.0
    record = old.action_record(obs, available, 4000)
    assert (
        (old.chain_actions(obs, record.noise, record.available).unsqueeze(-1) != 0)
        .logical_or(available[:, None, :1].bool())
        .all()
    )  # action 0 never where unavailable
    assert torch.equal(copy.deepcopy(old).kl_from_record(obs, record), torch.zeros(16))
    new = copy.deepcopy(old)
    with torch.no_grad():
        new.denoiser.output_layer.bias.add_(torch.tensor([0.2, -0.2, 0.0, 0.1]))
    action_kl = new.kl_from_record(obs, record)
    path_record = old.sample(obs.repeat(200, 1), record=True).record
    path_kl = new.kl_from_record(obs.repeat(200, 1), path_record)
    assert (action_kl >= 0).all() and action_kl.mean() > 1e-4
    assert action_kl.mean() < path_kl.mean()


def test_action_record_refuses_box_actions():
    with pytest.raises(ValueError, match="Discrete"):
        DiffusionPolicy(make_args(), OBS, BOX).action_record(torch.randn(2, 3), None, 4)


# --- path KL --------------------------------------------------------------------------------


def test_path_kl_is_zero_for_identical_actors_and_positive_otherwise():
    torch.manual_seed(0)
    old = DiffusionPolicy(make_args(), OBS, BOX)
    obs = torch.randn(64, 3)
    record = old.sample(obs, record=True).record
    # zero up to float rounding: the chain is re-evaluated in one batched call, not step by step
    assert copy.deepcopy(old).kl_from_record(obs, record).abs().max() < 1e-10
    new = copy.deepcopy(old)
    with torch.no_grad():
        new.denoiser.output_layer.bias.add_(0.01)
    kl = new.kl_from_record(obs, record)
    # states whose predicted x_0 stays clipped at the bounds for both actors can have KL 0
    assert (kl >= 0).all() and kl.mean() > 1e-5


@pytest.mark.parametrize("schedule", ["vp", "linear", "cosine"])
def test_path_kl_matches_the_closed_form_of_an_affine_denoiser(schedule):
    """Old ``eps = x / sqrt(1 - abar)``, new ``eps = x / sqrt(1 - abar) + b``: the means differ by
    ``c0_t sqrt(1/abar_t - 1) b`` at every ``x_t``, so
    ``KL = sum_t c0_t^2 (1/abar_t - 1) ||b||^2 / (2 sigma_t^2)``, with
    ``c0_t = beta_t sqrt(abar_{t-1}) / (1 - abar_t)``, ``sigma_t^2`` the posterior variance and
    ``sigma_1^2 = sigma_2^2``. Computed here from the betas in float64."""
    torch.manual_seed(0)
    steps = 8
    old = DiffusionPolicy(make_args(beta_schedule=schedule, n_timesteps=steps), OBS, BOX)
    betas = beta_schedule(schedule, steps, 0.1, 10.0)
    abar = torch.cumprod(1 - betas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    gain = (1 / abar - 1).sqrt()
    b = torch.tensor([0.3, -0.4], dtype=torch.float64) / gain.max()  # keeps x0_hat inside [-1, 1]
    c0 = betas * abar_prev.sqrt() / (1 - abar)
    var = betas * (1 - abar_prev) / (1 - abar)
    var[0] = var[1]
    expected = (c0**2 * gain**2 * b.pow(2).sum() / (2 * var)).sum().item()

    old.denoiser = AffineDenoiser(old.alphas_cumprod, torch.zeros(2))
    new = copy.deepcopy(old)
    new.denoiser.b = b.float()
    obs = torch.randn(32, 3)
    record = old.sample(obs, n=1, record=True).record
    kl = new.kl_from_record(obs, record)
    # The chains run in float32, and the two actors' means differ by a small fraction of their
    # size, so each state's KL carries a rounding error of ~1e-4 relative (~1e-8 absolute where
    # the KL is tiny, as for "linear"; up to 1.4e-4 and 9e-9 over seeds 0-11 here), which
    # depends on the CPU's float32 kernels. The mean over the 32 states averages it out (< 2e-5
    # and 1.4e-9 over those seeds): it must match the closed form to 1e-4; every single state
    # (the KL does not depend on x_t) to 1e-3.
    assert kl.double().mean().item() == pytest.approx(expected, rel=1e-4, abs=1e-8)
    assert torch.allclose(kl, torch.full_like(kl, expected), rtol=1e-3, atol=5e-8)


# --- Gaussian ablation ----------------------------------------------------------------------


def test_gaussian_kl_entropy_and_likelihood_are_exact():
    torch.manual_seed(0)
    policy = GaussianCandidatePolicy(make_args(), OBS, BOX)
    obs = torch.randn(8, 3)
    sample = policy.sample(obs, n=3, record=True)
    assert torch.equal(policy.kl_from_record(obs, sample.record), torch.zeros(8))
    assert torch.allclose(sample.x, torch.tanh(sample.target))
    mu, log_std = policy.distribution(obs)
    nll, neg_entropy = policy.surrogate_losses(obs, sample.target, None, 20000)
    expected_nll = -torch.distributions.Normal(mu, log_std.exp()).log_prob(sample.target).sum(-1)
    assert torch.allclose(nll, expected_nll)
    # entropy of tanh(u): Monte Carlo of -log p(x) over many draws agrees with the estimator
    u = torch.distributions.Normal(mu, log_std.exp()).sample((50000,))
    log_px = torch.distributions.Normal(mu, log_std.exp()).log_prob(u).sum(-1) - (1 - torch.tanh(u) ** 2).log().sum(-1)
    assert torch.allclose(-neg_entropy, -log_px.mean(0), atol=0.03)
    with torch.no_grad():
        policy.mu_layer.bias.add_(0.1)
    old_mu, old_std = sample.record.mu, sample.record.log_std.exp()
    new_mu, new_log_std = policy.distribution(obs)
    new_var = new_log_std.exp() ** 2
    closed = (new_log_std - old_std.log() + (old_std**2 + (old_mu - new_mu) ** 2) / (2 * new_var) - 0.5).sum(-1)
    assert torch.allclose(policy.kl_from_record(obs, sample.record), closed, atol=1e-6)
