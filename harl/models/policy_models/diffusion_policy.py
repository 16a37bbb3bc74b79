"""Diffusion actor of HAQO: a DDPM over one agent's action, conditioned on its observation.

The diffused variable ``x`` lives in ``[-1, 1]^dim``: the Box action before the affine map onto
its bounds, or for ``Discrete(n)`` a score per action whose arg-max over the available actions
is executed (:class:`ActionCodec`). Paper indices ``t = 1..T`` are code indices ``k = t - 1``.

Forward process ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``. Reverse step
(Ho et al. 2020), with the predicted ``x_0`` clipped to ``[-1, 1]`` at every step::

    x0_hat = clip(x_t / sqrt(abar_t) - sqrt(1 / abar_t - 1) eps_theta(x_t, t, o), -1, 1)
             (prediction: x0, the denoiser predicts the action itself: clip(a_theta(x_t, t, o), -1, 1))
    mu     = c0_t x0_hat + ct_t x_t                 (mean of the posterior q(x_{t-1} | x_t, x0_hat))
    x_{t-1} = mu + sigma_t z

``sigma_t^2`` is the posterior variance; at ``t = 1``, where it is 0, it takes the value of
``t = 2`` (DDPM's clipped log-variance), so the last step is a Gaussian too. Two consequences:

* drift: two actors' reverse chains are Gaussian steps with the same variances, so
  ``E_old sum_t ||mu_new(x_t, t, o) - mu_old(x_t, t, o)||^2 / (2 sigma_t^2)`` is exactly the KL
  between their chains (:meth:`DiffusionPolicy.kl_from_record`) and bounds the KL between their
  actions: the final clip and the arg-max are the same map for both actors, and a KL cannot
  grow through a common map. With a deterministic last step (DDPM's sampler) the KL between
  two actors' actions is unbounded.
* sharpness floor: no mode of the policy is narrower than ``sigma_2``. Best-of-K selection
  favours whichever of two equally good modes is sharper, and training on the winners sharpens
  it further, so without a common floor one mode takes over (the bimodal toy of
  tests/test_haqo.py: without the floor one of two equal modes took over in 8 of 8 seeds).

* action-space drift (Discrete, ``kl_measure: action``): the path KL also counts movement that
  changes no executed action (inside an arg-max cell, along unavailable actions' scores), so on
  Discrete codes it is far above the KL of the actions. :meth:`DiffusionPolicy.action_record`
  runs ``M`` chains per state on fixed noise and keeps the old actor's action frequencies;
  :meth:`DiffusionPolicy.kl_from_record` reruns the same chains (common random numbers: an
  unchanged actor gives exactly 0) and returns the KL between the two actors' estimated action
  distributions (:func:`chain_log_probs`).

Evaluation (:meth:`DiffusionPolicy.eval_actions`) drops the last step's noise; for Discrete actions it
executes the mode of several such chains.

:class:`CandidatePolicy` is the interface HAQO trains (this module, the Gaussian ablation in
``gaussian_candidate_policy.py`` and the exact categorical control in
``categorical_candidate_policy.py``): sampling passes that advance one network call per
denoising step for any number of candidates and states, the per-sample surrogate losses, and the
divergence from the actor that drew the candidates.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harl.models.base.distributions import masked_kl
from harl.models.base.mlp import MLPBase, MLPLayer
from harl.models.base.stacked import LinearParams, StackedLayers, layers_key
from harl.utils.models_tools import get_activation_gain, get_active_func, init_linear

Tensor = torch.Tensor

# Offset s of the cosine schedule (Nichol & Dhariwal 2021), part of its definition: it keeps
# beta_1 away from 0.
COSINE_OFFSET = 0.008
# Largest beta of the linear and cosine schedules (Nichol & Dhariwal 2021): keeps alpha_t > 0.
MAX_BETA = 0.999
# Longest period of the sinusoidal step embedding (Vaswani et al. 2017).
MAX_PERIOD = 10000.0
# Pseudo-count of every available action in :func:`chain_log_probs` (Krichevsky-Trofimov's
# add-1/2 estimator): keeps each estimated probability above 0, so the KL stays finite.
CHAIN_PSEUDO_COUNT = 0.5


# --- noise schedules ------------------------------------------------------------------------


def beta_schedule(name: str, n_timesteps: int, beta_min: float, beta_max: float) -> Tensor:
    """Noise schedule ``beta_1..beta_T`` as a float64 tensor ``(T,)``.

    * ``vp``: the variance-preserving SDE with ``beta(tau) = beta_min + tau (beta_max - beta_min)``
      on ``tau in [0, 1]``, integrated exactly over each of the T steps:
      ``beta_t = 1 - exp(-int_{(t-1)/T}^{t/T} beta(tau) dtau)`` (Song et al. 2021). Well
      conditioned for the small T HAQO uses.
    * ``linear``: DDPM's linear betas, ``linspace(beta_min / T, beta_max / T)`` (DDPM's 1e-4..0.02
      are ``beta_min = 0.1, beta_max = 20`` at ``T = 1000``), capped at ``MAX_BETA``.
    * ``cosine``: ``abar_t = f(t) / f(0)``, ``f(t) = cos^2((t/T + s) / (1 + s) pi / 2)``
      (Nichol & Dhariwal 2021), betas capped at ``MAX_BETA``; ``beta_min``/``beta_max`` unused.
    """
    if n_timesteps < 1:
        raise ValueError(f"n_timesteps must be >= 1, got {n_timesteps}")
    t = torch.arange(1, n_timesteps + 1, dtype=torch.float64)
    if name == "vp":
        integral = beta_min / n_timesteps + 0.5 * (beta_max - beta_min) * (2 * t - 1) / n_timesteps**2
        return -torch.expm1(-integral)
    if name == "linear":
        betas = torch.linspace(beta_min, beta_max, n_timesteps, dtype=torch.float64) / n_timesteps
        return betas.clamp(max=MAX_BETA)
    if name == "cosine":
        tau = torch.cat([t.new_zeros(1), t]) / n_timesteps
        f = torch.cos((tau + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)
    raise ValueError(f"beta_schedule must be 'vp', 'linear' or 'cosine', not {name!r}")


def sinusoidal_embedding(steps: Tensor, dim: int) -> Tensor:
    """``[sin(t w_j), cos(t w_j)]`` with ``w_j = MAX_PERIOD^(-j / (dim/2 - 1))``: ``(*steps.shape, dim)``."""
    if dim < 4 or dim % 2:
        raise ValueError(f"time_embed_dim must be even and >= 4, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float64) / (half - 1))
    angles = steps.to(torch.float64).unsqueeze(-1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1).to(torch.float32)


# --- action spaces --------------------------------------------------------------------------


class ActionCodec(nn.Module):
    """Maps the normalised action ``x in [-1, 1]^dim`` onto one agent's action space.

    * ``Box(low, high, (d,))``: ``dim = d``, ``action = bias + scale * x`` (finite bounds).
    * ``Discrete(n)``: ``dim = n``; the action is the arg-max of ``x`` over the available actions,
      so an unavailable action is never executed; its training target is ``+1`` at the action
      and ``-1`` elsewhere. A sampled ``x`` is the chain's final scores, not clipped
      (:meth:`bound`).

    Every method accepts any leading dimensions; ``available`` (``(..., n)``, 1/True = available,
    ``None`` = all) broadcasts against them.
    """

    def __init__(self, act_space: gymnasium.Space) -> None:
        super().__init__()
        self.discrete = isinstance(act_space, gymnasium.spaces.Discrete)
        if self.discrete:
            self.dim = int(act_space.n)
            scale, bias = torch.ones(self.dim), torch.zeros(self.dim)
        elif isinstance(act_space, gymnasium.spaces.Box) and len(act_space.shape) == 1:
            if not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
                raise ValueError(f"diffusion actions need finite Box bounds, got {act_space}")
            self.dim = int(act_space.shape[0])
            low = torch.as_tensor(act_space.low, dtype=torch.float32)
            high = torch.as_tensor(act_space.high, dtype=torch.float32)
            scale, bias = (high - low) / 2, (high + low) / 2
        else:
            raise NotImplementedError(f"supported action spaces: 1-D Box and Discrete, not {act_space}")
        # width of the action in the critic's joint action (one-hot for Discrete)
        self.critic_dim = self.dim
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("bias", bias, persistent=False)

    def bound(self, x: Tensor) -> Tensor:
        """The end of a reverse chain as an action: Box clipped to ``[-1, 1]``; Discrete scores
        unchanged. Only their order matters, and clipping would tie every score above 1, whose
        arg-max is then the lowest index: an untrained actor's chains tie in about a third of
        samples, which made it pick action 0 2.5 times as often as action 8 of 9 (on SMAX, moves
        before attacks)."""
        return x if self.discrete else x.clamp(-1.0, 1.0)

    def index(self, x: Tensor, available: Tensor | None) -> Tensor:
        """Discrete: arg-max of ``x`` over the available actions, ``(...)`` int64."""
        if available is not None:
            x = x.masked_fill(~available.bool(), -math.inf)
        return x.argmax(-1)

    def to_env(self, x: Tensor, available: Tensor | None = None) -> Tensor:
        """Env format: Box ``(..., d)`` inside the bounds, Discrete ``(..., 1)`` int64 index."""
        if self.discrete:
            return self.index(x, available).unsqueeze(-1)
        return self.bias + self.scale * x

    def to_critic(self, x: Tensor, available: Tensor | None = None) -> Tensor:
        """Critic format: Box as :meth:`to_env`, Discrete one-hot ``(..., n)`` float."""
        if self.discrete:
            return F.one_hot(self.index(x, available), self.dim).to(x.dtype)
        return self.to_env(x)

    def target(self, x: Tensor, available: Tensor | None = None) -> Tensor:
        """Denoising target of the executed action: Box ``x``; Discrete ``+1`` at it, ``-1`` elsewhere."""
        if self.discrete:
            return 2.0 * self.to_critic(x, available) - 1.0
        return x

    def uniform(self, shape: Sequence[int], available: Tensor | None, device: torch.device) -> Tensor:
        """Uniform actions as targets ``(*shape, dim)``: Box ``U[-1, 1]^d``; Discrete the target
        of a uniformly drawn available action (the arg-max of i.i.d. uniform scores over them)."""
        u = torch.rand(*shape, self.dim, device=device)
        return self.target(u, available) if self.discrete else 2.0 * u - 1.0


# --- the interface HAQO trains --------------------------------------------------------------


class CandidateSample(NamedTuple):
    """``n`` candidate actions per state.

    ``x``: normalised actions ``(n, *lead, dim)`` in ``[-1, 1]`` (Discrete: scores,
    :meth:`ActionCodec.bound`); ``target``: what the surrogate
    losses train on to make this candidate more likely, ``(n, *lead, dim)`` (``None`` when the
    caller asked for the actions only); ``record``: what
    :meth:`CandidatePolicy.kl_from_record` needs to measure the drift from the sampling actor
    (``None`` unless requested).
    """

    x: Tensor
    target: Tensor | None
    record: Any


class SamplingPass(Protocol):
    """A sampling pass in progress; :func:`run_passes` advances several in lockstep."""

    steps_left: int

    def step(self) -> None:
        """One denoising step: one network call for all candidates of all states of the pass."""

    def finish(self, available: Tensor | None, targets: bool = True) -> CandidateSample:
        """The candidates once ``steps_left == 0`` (their training targets only if ``targets``)."""


def run_passes(passes: Sequence[SamplingPass]) -> None:
    """Advance every pass to its end, one denoising step of each pass at a time."""
    while any(p.steps_left for p in passes):
        for p in passes:
            if p.steps_left:
                p.step()


class CandidatePolicy(nn.Module):
    """What HAQO needs from a policy class (diffusion, the Gaussian ablation, the categorical control).

    ``codec`` maps normalised actions onto the action space; the rest is:

    * :meth:`start_sampling` -> :class:`SamplingPass`, finished by :meth:`sample` or, for many
      policies at once, by :func:`run_passes`;
    * :meth:`surrogate_losses`: per-sample losses whose weighted means are L_QV (Eq. 5) and
      L_ent (Eq. 9) for the diffusion actor, the negative log-likelihood and entropy for the
      Gaussian and categorical ones;
    * :meth:`kl_from_record`: ``KL(pi_old || pi)`` per state (old = the actor that drew the
      candidates).
    """

    codec: ActionCodec

    def start_sampling(self, obs: Tensor, n: int, record: bool = False) -> SamplingPass:
        """Start drawing ``n`` candidates for every observation ``(*lead, d)``; ``record`` keeps
        what :meth:`kl_from_record` needs."""
        raise NotImplementedError

    def stack_key(self) -> Any:
        """Policies with equal keys (not None) can share one sampling pass
        (:func:`start_group_sampling`); None: only with themselves."""
        return None

    @staticmethod
    def start_stacked_sampling(
        policies: Sequence[CandidatePolicy], obs: Sequence[Tensor], n: int, record: bool = False
    ) -> SamplingPass:
        """One pass for several policies of this class with equal (not None) :meth:`stack_key`
        (:func:`start_group_sampling`, which does the diffusion actor's itself)."""
        raise NotImplementedError

    def eval_actions(self, obs: Tensor, available: Tensor | None = None) -> Tensor:
        """Normalised actions ``(*lead, dim)`` for evaluation, without exploration noise
        (``available``: ``(*lead, n)`` for Discrete)."""
        raise NotImplementedError

    def surrogate_losses(
        self, obs: Tensor, targets: Tensor, available: Tensor | None, n_entropy: int
    ) -> tuple[Tensor, Tensor]:
        """Differentiable per-sample losses.

        Args:
            obs: ``(B, d)``.
            targets: candidate targets ``(C, B, dim)`` (:attr:`CandidateSample.target`).
            available: ``(B, n)`` for Discrete.
            n_entropy: samples per state for the entropy term.

        Returns:
            ``(C, B)`` loss of each target (lower = more likely) and ``(B,)`` entropy loss per
            state (lower = more spread).
        """
        raise NotImplementedError

    def kl_from_record(self, obs: Tensor, record: Any) -> Tensor:
        """``KL(pi_old(.|o) || pi(.|o))`` ``(*lead,)`` for the recording actor ``pi_old``."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self, obs: Tensor, available: Tensor | None = None, n: int = 1, record: bool = False, targets: bool = True
    ) -> CandidateSample:
        """``n`` candidates for every observation ``(*lead, d)``: ``x`` is ``(n, *lead, dim)``;
        ``targets=False`` leaves ``target`` ``None`` (acting needs the actions only)."""
        sampling = self.start_sampling(obs, n, record)
        run_passes([sampling])
        return sampling.finish(available, targets)


# --- the diffusion actor --------------------------------------------------------------------


class Denoiser(nn.Module):
    """``eps_theta(x_t, t, o)``: HARL's ``MLPBase`` on ``o`` (feature normalisation,
    ``hidden_sizes``, ``activation_func``), a sinusoidal embedding of ``t``, both concatenated with
    ``x_t`` and passed through ``Linear -> act -> LayerNorm`` layers of ``hidden_sizes`` and a
    linear output.

    The first layer on ``[x_t; emb(t); h(o)]`` is evaluated as ``W_x x_t + W_t emb(t) + (W_o h(o) + b)``
    (the same function): :meth:`context` computes the observation part once per state, and each
    denoising step of every candidate reuses it by broadcasting.

    Args:
        args: model keys ``hidden_sizes``, ``activation_func``, ``use_feature_normalization``,
            ``initialization_method``, ``gain`` (output layer), ``time_embed_dim``.
        obs_dim: ``d``.
        action_dim: ``dim`` of the diffused variable.
        n_timesteps: ``T``.
    """

    def __init__(self, args: dict, obs_dim: int, action_dim: int, n_timesteps: int) -> None:
        super().__init__()
        hidden_sizes = list(args["hidden_sizes"])
        method, activation = args["initialization_method"], args["activation_func"]
        time_dim = args["time_embed_dim"]
        self.obs_base = MLPBase(args, (obs_dim,))
        self.register_buffer(
            "time_features", sinusoidal_embedding(torch.arange(1, n_timesteps + 1), time_dim), persistent=False
        )
        self.split = (action_dim, time_dim, hidden_sizes[-1])
        self.input_layer = init_linear(sum(self.split), hidden_sizes[0], method, get_activation_gain(activation))
        self.input_act = get_active_func(activation)
        self.input_norm = nn.LayerNorm(hidden_sizes[0])
        self.hidden = MLPLayer(hidden_sizes[0], hidden_sizes[1:], method, activation)
        self.output_layer = init_linear(hidden_sizes[-1], action_dim, method, args["gain"])
        # equal for denoisers whose observation parts one StackedLayers call can batch
        self.context_key = layers_key(self.context_layers())
        # group_stacks' stacked parameter sets of the groups this denoiser leads, and the
        # parameters it watches (the Parameter objects stay for the module's life: .to(),
        # optimizers and load_state_dict write into them)
        self.group_stacks_cache: dict = {}
        self.watched_parameters = tuple(self.parameters())

    def obs_projection(self) -> LinearParams:
        """The first layer's observation part ``W_o``, with the layer's bias."""
        return LinearParams(self.input_layer.weight[:, self.split[0] + self.split[1] :], self.input_layer.bias)

    def context(self, obs: Tensor) -> Tensor:
        """Observation part of the first layer, ``W_o h(o) + b``: ``(*lead, hidden_sizes[0])``."""
        return F.linear(self.obs_base(obs), *self.obs_projection())

    def context_layers(self) -> list[nn.Module | LinearParams]:
        """:meth:`context` as a sequence of layers (for :class:`StackedLayers`): the observation
        base's, then :meth:`obs_projection`."""
        norm = [self.obs_base.feature_norm] if self.obs_base.use_feature_normalization else []
        return [*norm, *self.obs_base.mlp.fc, self.obs_projection()]

    def time_bias(self) -> Tensor:
        """Step part of the first layer, ``W_t emb(t)`` for every step: ``(T, hidden_sizes[0])``."""
        return F.linear(self.time_features, self.input_layer.weight[:, self.split[0] : self.split[0] + self.split[1]])

    def step_conditions(self, obs: Tensor) -> Tensor:
        """What :meth:`head` needs besides ``x`` at each step, ``context + time_bias[k]``:
        ``(T, *lead, hidden)`` for observations ``(*lead, d)``, computed once per sampling pass."""
        time_bias = self.time_bias()
        return time_bias.view(len(time_bias), *([1] * (obs.dim() - 1)), -1) + self.context(obs)

    def action_weight(self) -> Tensor:
        """The noisy action's part of the first layer's weight, ``W_x``: ``(hidden_sizes[0], dim)``."""
        return self.input_layer.weight[:, : self.split[0]]

    def head_layers(self) -> list[nn.Module]:
        """The layers after the first layer's pre-activation, in order."""
        return [self.input_act, self.input_norm, *self.hidden.fc, self.output_layer]

    def head(self, x: Tensor, condition: Tensor) -> Tensor:
        """Predicted noise ``(*L, dim)`` from the noisy action and the rest of the first layer's
        pre-activation, ``condition = context + time_bias[k]`` (broadcastable to ``(*L, hidden)``)."""
        z = F.linear(x, self.action_weight()) + condition
        for layer in self.head_layers():
            z = layer(z)
        return z

    def forward(self, x: Tensor, k: Tensor, context: Tensor) -> Tensor:
        """Predicted noise ``(*L, dim)``.

        Args:
            x: noisy actions ``(*L, dim)``.
            k: step indices (``t - 1``), int64, broadcastable to ``x.shape[:-1]``.
            context: :meth:`context` of the observations, broadcastable to ``(*L, hidden)``.
        """
        return self.head(x, self.time_bias()[k] + context)


class StepCoefficients(NamedTuple):
    """Constants of reverse step(s) ``k``: floats for one step, or tensors broadcastable to the
    noisy actions for per-sample steps."""

    sqrt_recip_abar: Tensor | float
    sqrt_recipm1_abar: Tensor | float
    coef_x0: Tensor | float
    coef_xt: Tensor | float


class DiffusionRecord(NamedTuple):
    """The first candidate's chain: the inputs ``x_t`` of every reverse step and the sampling
    actor's means ``mu_old(x_t, t, o)``, both ``(*lead, T, dim)`` with step ``k = t - 1`` at
    index ``k`` (the leading dimensions first, as in every record, so that
    :func:`record_member` can split a group's record)."""

    x: Tensor
    mu: Tensor


class ActionRecord(NamedTuple):
    """What the action-space KL needs of the old actor (:meth:`DiffusionPolicy.action_record`):
    the noise of ``M`` chains per state ``(*lead, M, T + 1, dim)`` (index 0 is ``x_T``, index
    ``j >= 1`` the noise added by the ``j``-th reverse step), the availability ``(*lead, n)``
    (bool) and the old actor's estimated action log-probabilities ``(*lead, n)``."""

    noise: Tensor
    available: Tensor
    log_probs: Tensor


def chain_log_probs(actions: Tensor, available: Tensor) -> Tensor:
    """Estimated log-probabilities ``(*lead, n)`` of the actions of ``M`` chains per state,
    ``actions (*lead, M)`` int64: ``(count_a + c) / (M + c n_avail)`` over the available actions
    (``c = CHAIN_PSEUDO_COUNT``), ``-inf`` for the others."""
    available = available.bool()
    counts = F.one_hot(actions, available.shape[-1]).sum(-2).to(torch.float32)
    pseudo = CHAIN_PSEUDO_COUNT * available
    probs = (counts + pseudo) / (actions.shape[-1] + pseudo.sum(-1, keepdim=True))
    return probs.log().masked_fill(~available, -math.inf)


class StackedHead:
    """:meth:`Denoiser.head` of ``G`` denoisers of identical structure as one batched call
    (:class:`StackedLayers`), so a denoising step of several agents costs one network call
    (docs/HAQO.md, algorithm 1). Built under ``no_grad`` and kept in the group cache of
    ``_group_stacks`` until a denoiser's parameters change.

    Inputs and outputs carry ``G`` first: ``x (G, *L, dim)``, ``condition`` broadcastable to
    ``(G, *L, hidden)``.
    """

    def __init__(self, denoisers: Sequence[Denoiser]) -> None:
        self.action_weight_t = torch.stack([d.action_weight() for d in denoisers]).transpose(1, 2)
        self.layers = StackedLayers([d.head_layers() for d in denoisers])

    def __call__(self, x: Tensor, condition: Tensor) -> Tensor:
        groups, lead = x.shape[0], x.shape[1:-1]
        z = torch.bmm(x.reshape(groups, -1, x.shape[-1]), self.action_weight_t).view(groups, *lead, -1)
        z = (z + condition).reshape(groups, -1, z.shape[-1])
        return self.layers(z).view(groups, *lead, -1)


class _DiffusionPass:
    """Ancestral sampling from ``x_T ~ N(0, I)``, one network call per step (see module doc).

    Args:
        policy: whose schedule constants the reverse steps use.
        conditions: ``(T, ...)``, entry ``k`` is what ``head`` takes besides ``x`` at step ``k``.
        x: ``x_T``.
        head: the noise predictor ``head(x, condition)``.
        candidate_dim: the dimension of ``x`` that indexes the candidates.
        record: keep the first candidate's chain.
        final_noise: the last step keeps its noise (False: evaluation).
    """

    def __init__(
        self,
        policy: DiffusionPolicy,
        conditions: Tensor,
        x: Tensor,
        head: Callable[[Tensor, Tensor], Tensor],
        candidate_dim: int = 0,
        record: bool = False,
        final_noise: bool = True,
    ) -> None:
        self.policy, self.conditions, self.x, self.head = policy, conditions, x, head
        self.candidate_dim = candidate_dim
        self.steps_left = policy.n_timesteps
        self.final_noise = final_noise
        self.chain: list[tuple[Tensor, Tensor]] | None = [] if record else None

    def step(self) -> None:
        self.steps_left -= 1
        k = self.steps_left
        eps = self.head(self.x, self.conditions[k])
        mu = self.policy.posterior_mean(self.x, eps, self.policy.step_coefficients[k])
        if self.chain is not None:
            self.chain.append((self.x.select(self.candidate_dim, 0), mu.select(self.candidate_dim, 0)))
        if k > 0 or self.final_noise:
            mu = torch.add(mu, torch.randn_like(mu), alpha=self.policy.sigma_values[k])
        self.x = mu

    def finish(self, available: Tensor | None, targets: bool = True) -> CandidateSample:
        x = self.policy.codec.bound(self.x).movedim(self.candidate_dim, 0)
        record = None
        if self.chain is not None:
            xs, mus = zip(*reversed(self.chain))  # index k = t - 1
            record = DiffusionRecord(torch.stack(xs, -2), torch.stack(mus, -2))
        return CandidateSample(x, self.policy.codec.target(x, available) if targets else None, record)


class GroupStacks(NamedTuple):
    """A group's denoisers stacked for :func:`start_group_sampling`: the head, the observation
    part (``None`` when the observation bases differ) and the step biases ``(T, G, hidden)``."""

    head: StackedHead
    context: StackedLayers | None
    time_bias: Tensor


def _parameter_versions(denoisers: Sequence[Denoiser]) -> tuple:
    # every in-place write (optimizer steps, load_state_dict, the line search's copies) bumps
    # _version; a replaced tensor has another address
    return tuple((p.data_ptr(), p._version) for d in denoisers for p in d.watched_parameters)


@torch.no_grad()
def group_stacks(denoisers: Sequence[Denoiser]) -> GroupStacks:
    """The stacked parameter sets of ``denoisers``, rebuilt only when one of their parameters
    changed: between two updates of the actors, every sampling call (one per environment step,
    one per critic update) reuses them instead of stacking and folding the weights again.
    Kept on the first denoiser, checked against weak references to all of them."""
    cache: dict = denoisers[0].group_stacks_cache
    key = tuple(id(d) for d in denoisers)
    versions = _parameter_versions(denoisers)
    entry = cache.get(key)
    if entry is not None and entry[1] == versions and all(ref() is d for ref, d in zip(entry[0], denoisers)):
        return entry[2]
    same_context = len({d.context_key for d in denoisers}) == 1
    stacks = GroupStacks(
        StackedHead(denoisers),
        StackedLayers([d.context_layers() for d in denoisers]) if same_context else None,
        torch.stack([d.time_bias() for d in denoisers], 1),
    )
    cache[key] = ([weakref.ref(d) for d in denoisers], versions, stacks)
    return stacks


@torch.no_grad()
def start_group_sampling(
    policies: Sequence[CandidatePolicy], obs: Sequence[Tensor], n: int, record: bool = False
) -> SamplingPass:
    """One sampling pass for ``G`` policies at once, ``obs[g]`` ``(*lead, d_g)`` with the same
    ``lead``; its :meth:`SamplingPass.finish` gives ``x`` ``(n, G, *lead, dim)`` and a record
    with leading dimensions ``(G, *lead)`` (split it with :func:`record_member`).

    The same policy ``G`` times (``share_param``): its own pass on the stacked observations.
    Diffusion policies with equal :meth:`CandidatePolicy.stack_key` (same denoiser structure and
    schedule; the observation bases may differ): a :class:`StackedHead` pass. Other policies with
    equal keys: their class's :meth:`CandidatePolicy.start_stacked_sampling`.
    """
    first = policies[0]
    if all(p is first for p in policies):
        return first.start_sampling(torch.stack(list(obs)), n, record)
    key = first.stack_key()
    if key is None or any(p.stack_key() != key for p in policies):
        raise ValueError("start_group_sampling needs one policy, or policies with equal stack_key()")
    if not isinstance(first, DiffusionPolicy):  # e.g. the categorical control's stacked logits
        return type(first).start_stacked_sampling(policies, obs, n, record)
    denoisers = [p.denoiser for p in policies]
    stacks = group_stacks(denoisers)
    lead = obs[0].shape[:-1]
    if stacks.context is not None:  # same observation size and base: one call
        stacked_obs = torch.stack(list(obs)).reshape(len(obs), -1, obs[0].shape[-1])
        context = stacks.context(stacked_obs).view(len(obs), *lead, -1)
    else:
        context = torch.stack([d.context(o) for d, o in zip(denoisers, obs)])
    time_bias = stacks.time_bias  # (T, G, hidden)
    conditions = time_bias.view(*time_bias.shape[:2], *([1] * len(lead)), -1) + context
    head = stacks.head
    x = torch.randn(len(policies), n, *obs[0].shape[:-1], first.codec.dim, device=obs[0].device)
    # (T, G, 1, *lead, hidden): broadcast over the candidates, which come second in x
    return _DiffusionPass(first, conditions.unsqueeze(2), x, head, candidate_dim=1, record=record)


def record_member(record: Any, g: int) -> Any:
    """Member ``g``'s part of a group pass's record (every record is a tuple of tensors whose
    first dimension indexes the group); ``None`` stays ``None``."""
    return None if record is None else type(record)(*(part[g] for part in record))


class DiffusionPolicy(CandidatePolicy):
    """DDPM actor over one agent's action (see the module doc for the sampler).

    Args:
        args: model keys of :class:`Denoiser` plus ``n_timesteps``, ``beta_schedule``,
            ``beta_min``, ``beta_max``, ``eval_samples``, ``prediction``.
        obs_space: Box ``(d,)``.
        act_space: 1-D Box with finite bounds, or Discrete.
        device: where the parameters live.
    """

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.spaces.Box,
        act_space: gymnasium.Space,
        device: torch.device | str = torch.device("cpu"),
    ) -> None:
        super().__init__()
        self.codec = ActionCodec(act_space)
        self.n_timesteps = int(args["n_timesteps"])
        self.eval_samples = int(args["eval_samples"])
        if self.eval_samples < 1:
            raise ValueError(f"eval_samples must be >= 1, got {self.eval_samples}")
        if self.n_timesteps < 2:
            raise ValueError(
                f"n_timesteps must be >= 2 (the last step borrows t = 2's variance), got {self.n_timesteps}"
            )
        if args["prediction"] not in ("auto", "eps", "x0"):
            raise ValueError(f"prediction must be 'auto', 'eps' or 'x0', not {args['prediction']!r}")
        # auto: x0 on Discrete codes (denoising_loss), eps on Box actions (every continuous result)
        self.predicts_x0 = args["prediction"] == "x0" or (args["prediction"] == "auto" and self.codec.discrete)
        self.denoiser = Denoiser(args, obs_space.shape[0], self.codec.dim, self.n_timesteps)

        betas = beta_schedule(args["beta_schedule"], self.n_timesteps, args["beta_min"], args["beta_max"])
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        posterior_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        posterior_var[0] = posterior_var[1]  # 0 at t = 1: use t = 2's (module doc)
        constants = {
            "alphas_cumprod": abar,
            "sqrt_abar": abar.sqrt(),  # forward process
            "sqrt_one_minus_abar": (1.0 - abar).sqrt(),
            "sqrt_recip_abar": abar.rsqrt(),  # x0_hat
            "sqrt_recipm1_abar": (1.0 / abar - 1.0).sqrt(),
            "coef_x0": betas * abar_prev.sqrt() / (1.0 - abar),  # posterior mean
            "coef_xt": (1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar),
            "sigma": posterior_var.sqrt(),
            "variance": posterior_var,
        }
        for name, value in constants.items():
            self.register_buffer(name, value.to(torch.float32), persistent=False)
        self.register_buffer("step_index", torch.arange(self.n_timesteps), persistent=False)
        # the same constants as Python floats, for the sampling passes where all samples share k
        self.step_coefficients = [
            StepCoefficients(*(constants[name][k].item() for name in StepCoefficients._fields))
            for k in range(self.n_timesteps)
        ]
        self.sigma_values = constants["sigma"].tolist()
        layers = layers_key(self.denoiser.head_layers())
        schedule = (tuple(self.step_coefficients), tuple(self.sigma_values))
        self._stack_key = (
            type(self),
            self.codec.dim,
            tuple(self.denoiser.action_weight().shape),
            layers,
            schedule,
            self.predicts_x0,
        )
        self.to(device)

    def posterior_mean(self, x: Tensor, out: Tensor, coef: StepCoefficients) -> Tensor:
        """Mean of ``p_theta(x_{t-1} | x_t, o)`` from the denoiser's output ``out`` (the predicted
        noise, or with ``prediction: x0`` the predicted action), with the clipped ``x0_hat``."""
        x0 = out if self.predicts_x0 else coef.sqrt_recip_abar * x - coef.sqrt_recipm1_abar * out
        return coef.coef_x0 * x0.clamp(-1.0, 1.0) + coef.coef_xt * x

    def reverse_mean(self, x: Tensor, k: Tensor, context: Tensor) -> Tensor:
        """Mean of ``p_theta(x_{t-1} | x_t, o)`` at per-sample steps (one denoiser call).

        Args:
            x: ``(*L, dim)``; k: int64 step indices broadcastable to ``x.shape[:-1]``;
            context: :meth:`Denoiser.context`.
        """
        coef = StepCoefficients(*(getattr(self, name)[k].unsqueeze(-1) for name in StepCoefficients._fields))
        return self.posterior_mean(x, self.denoiser(x, k, context), coef)

    def start_sampling(self, obs: Tensor, n: int, record: bool = False, final_noise: bool = True) -> _DiffusionPass:
        x = torch.randn(n, *obs.shape[:-1], self.codec.dim, device=obs.device)
        # the conditioning of each step is fixed for the whole pass: computed once, not per step
        conditions = self.denoiser.step_conditions(obs)
        return _DiffusionPass(self, conditions, x, self.denoiser.head, record=record, final_noise=final_noise)

    def stack_key(self) -> tuple:
        """Equal for diffusion policies whose denoising steps one :class:`StackedHead` can batch
        (the structure fixed at construction: layer types and shapes, action size, schedule)."""
        return self._stack_key

    @torch.no_grad()
    def eval_actions(self, obs: Tensor, available: Tensor | None = None) -> Tensor:
        """Chains whose last step is its mean, without the sharpness floor (module doc). Box: one
        chain per observation. Discrete: the most frequent action of ``eval_samples`` chains, the
        policy's mode (as a categorical policy's arg-max), returned as its ``+-1`` code."""
        n = self.eval_samples if self.codec.discrete else 1
        sampling = self.start_sampling(obs, n, final_noise=False)
        run_passes([sampling])
        x = sampling.finish(None, targets=False).x
        if not self.codec.discrete:
            return x[0]
        counts = F.one_hot(self.codec.index(x, available), self.codec.dim).sum(0)
        return self.codec.target(counts.float(), available)

    def denoising_loss(self, actions: Tensor, context: Tensor) -> Tensor:
        """``||eps - eps_theta(sqrt(abar_t) a + sqrt(1 - abar_t) eps, t, o)||^2 / dim`` per sample
        (with ``prediction: x0``, ``||a - a_theta(...)||^2 / dim``), ``t`` uniform in ``1..T``,
        ``eps ~ N(0, I)``: ``(*L,)`` for actions ``(*L, dim)``.

        Divided by ``dim`` (the mean over action dimensions) so the same learning rate suits any
        action size. Predicting ``x0`` weights every step's error on the action equally, where
        predicting the noise weights step ``t``'s by ``abar_t / (1 - abar_t)``, almost nothing
        at the noisy steps that decide which action a chain ends at: on Discrete codes the
        ``x0`` form fits a teacher's actions several times faster (docs/results/HAQO_DISCRETE.md).
        """
        k = torch.randint(self.n_timesteps, actions.shape[:-1], device=actions.device)
        eps = torch.randn_like(actions)
        noisy = self.sqrt_abar[k].unsqueeze(-1) * actions + self.sqrt_one_minus_abar[k].unsqueeze(-1) * eps
        return ((actions if self.predicts_x0 else eps) - self.denoiser(noisy, k, context)).pow(2).mean(-1)

    def surrogate_losses(
        self, obs: Tensor, targets: Tensor, available: Tensor | None, n_entropy: int
    ) -> tuple[Tensor, Tensor]:
        """Denoising losses of the candidates (Eq. 5 before weighting) and of ``n_entropy``
        uniform actions per state (Eq. 9 before ``alpha``), in one denoiser call."""
        uniform = self.codec.uniform((n_entropy, *obs.shape[:-1]), available, obs.device)
        losses = self.denoising_loss(torch.cat([targets, uniform]), self.denoiser.context(obs))
        return losses[: len(targets)], losses[len(targets) :].mean(0)

    @torch.no_grad()
    def chain_actions(self, obs: Tensor, noise: Tensor, available: Tensor) -> Tensor:
        """The Discrete actions ``(*lead, M)`` of ``M`` chains per observation ``(*lead, d)`` run on
        the given noise ``(*lead, M, T + 1, dim)`` (:class:`ActionRecord`), last step's noise
        included (the behaviour policy's actions)."""
        conditions = self.denoiser.step_conditions(obs).unsqueeze(-2)  # (T, *lead, 1, hidden)
        x = noise[..., 0, :]
        for j, k in enumerate(reversed(range(self.n_timesteps)), start=1):
            mu = self.posterior_mean(x, self.denoiser.head(x, conditions[k]), self.step_coefficients[k])
            x = torch.add(mu, noise[..., j, :], alpha=self.sigma_values[k])
        return self.codec.index(self.codec.bound(x), available.unsqueeze(-2))

    @torch.no_grad()
    def action_record(self, obs: Tensor, available: Tensor | None, n_chains: int) -> ActionRecord:
        """Fix the noise of ``n_chains`` chains per observation and estimate this actor's
        Discrete action distribution on it (module doc, action-space drift)."""
        if not self.codec.discrete:
            raise ValueError("the action-space KL needs Discrete actions (Box: the path KL)")
        lead = obs.shape[:-1]
        if available is None:
            available = torch.ones(*lead, self.codec.dim, device=obs.device)
        available = available.bool()
        noise = torch.randn(*lead, n_chains, self.n_timesteps + 1, self.codec.dim, device=obs.device)
        return ActionRecord(noise, available, chain_log_probs(self.chain_actions(obs, noise, available), available))

    def kl_from_record(self, obs: Tensor, record: DiffusionRecord | ActionRecord) -> Tensor:
        """``KL(pi_old || pi)`` per state from the old actor's record: for an
        :class:`ActionRecord` the KL between the estimated Discrete action distributions on the
        record's noise; for a :class:`DiffusionRecord` the path KL below."""
        if isinstance(record, ActionRecord):
            new_log_probs = chain_log_probs(self.chain_actions(obs, record.noise, record.available), record.available)
            return masked_kl(record.log_probs, new_log_probs, record.available)
        return self.path_kl(obs, record)

    def path_kl(self, obs: Tensor, record: DiffusionRecord) -> Tensor:
        """Path KL ``sum_t ||mu(x_t, t, o) - mu_old(x_t, t, o)||^2 / (2 sigma_t^2)`` on the recorded
        chain of the old actor: the KL between the two reverse chains, an upper bound on the
        KL between their actions (module doc). One denoiser call for all T steps."""
        k = self.step_index
        mu = self.reverse_mean(record.x, k, self.denoiser.context(obs).unsqueeze(-2))
        per_step = (mu - record.mu).pow(2).sum(-1) / (2.0 * self.variance)
        return per_step.sum(-1)
