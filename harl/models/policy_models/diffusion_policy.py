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

:class:`DiffusionPolicy` implements :class:`~harl.models.policy_models.candidate_policy.CandidatePolicy`,
the interface HAQO trains; several agents' actors sample as one pass through ``group_sampling.py``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import gymnasium
import torch
import torch.nn.functional as F

from harl.models.base.distributions import masked_kl
from harl.models.base.stacked import layers_key
from harl.models.policy_models.candidate_policy import ActionCodec, CandidatePolicy, CandidateSample, run_passes
from harl.models.policy_models.denoiser import Denoiser, beta_schedule

Tensor = torch.Tensor

# Pseudo-count of every available action in :func:`chain_log_probs` (Krichevsky-Trofimov's
# add-1/2 estimator): keeps each estimated probability above 0, so the KL stays finite.
CHAIN_PSEUDO_COUNT = 0.5


# --- the diffusion actor --------------------------------------------------------------------


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


class DiffusionPass:
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

    def start_sampling(self, obs: Tensor, n: int, record: bool = False, final_noise: bool = True) -> DiffusionPass:
        x = torch.randn(n, *obs.shape[:-1], self.codec.dim, device=obs.device)
        # the conditioning of each step is fixed for the whole pass: computed once, not per step
        conditions = self.denoiser.step_conditions(obs)
        return DiffusionPass(self, conditions, x, self.denoiser.head, record=record, final_noise=final_noise)

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
