"""The interface HAQO trains, whatever the policy class: the action codec, candidate samples,
sampling passes and :class:`CandidatePolicy`.

:class:`CandidatePolicy` is implemented by the diffusion actor (``diffusion_policy.py``), the
Gaussian ablation (``gaussian_candidate_policy.py``) and the exact categorical control
(``categorical_candidate_policy.py``): sampling passes that advance one network call per
denoising step for any number of candidates and states, the per-sample surrogate losses, and the
divergence from the actor that drew the candidates. Several agents' policies sample together
through ``group_sampling.py``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol, Sequence

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


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


def record_member(record: Any, g: int) -> Any:
    """Member ``g``'s part of a group pass's record (every record is a tuple of tensors whose
    first dimension indexes the group); ``None`` stays ``None``."""
    return None if record is None else type(record)(*(part[g] for part in record))
