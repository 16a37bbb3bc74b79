"""Exact categorical actor for HAQO's policy-class control on Discrete spaces (``actor: categorical``).

The discrete counterpart of the Gaussian ablation (:mod:`gaussian_candidate_policy`): the same
candidates, weights, critic and runner as the diffusion actor; only the policy class changes, to
one whose likelihood, entropy and KL are exact. ``pi(.|o) = softmax(logits(o))`` restricted to the
available actions, with ``MLPBase`` (``hidden_sizes``, ``activation_func``,
``use_feature_normalization``) then a linear layer of ``n`` logits.

* Sampling: Gumbel-max, ``argmax_{a available} (logits_a + g_a)`` with ``g_a`` i.i.d. standard
  Gumbel, is an exact sample from the masked softmax. A sampling pass does not know the
  availability (the :class:`CandidatePolicy` interface hands it to ``finish`` only, and acting
  hands it to the codec), so the pass keeps the perturbed logits' ranks, scaled into ``[-1, 1]``,
  as the candidate ``x``: the codec's arg-max over whichever actions are available is the arg-max
  of the perturbed logits over them, i.e. a sample of the masked softmax, and an unavailable action
  is never executed. When ``finish`` is given the availability, ``x`` becomes the ``+-1`` code of
  the sampled action (the diffusion actor's Discrete target), which decodes to the same action.
* Loss of a candidate (Eq. 5 before weighting): ``l(a|o) = -log pi(a|o)``, so the Q-weighted loss
  is a weighted log-likelihood (AWR-style, as for the Gaussian). The target of a candidate is its
  ``+-1`` code; the action is its arg-max.
* Entropy term (Eq. 9 before ``alpha``): ``-H(pi(.|o))``, the exact entropy of the masked
  categorical. The diffusion actor's surrogate ``E_{u ~ U(A)} l(u|o)`` would here be the
  cross-entropy ``log n_avail + KL(U || pi)``, which also pushes towards the uniform policy, but is
  unbounded as any available action's probability goes to 0, so it would outweigh the Q-weighted
  term wherever the policy becomes confident; the exact entropy is bounded by ``log n_avail`` and
  is the bonus the Gaussian ablation uses (its exact entropy), so ``entropy_alpha`` means the
  same for both exact controls. ``entropy_samples`` is unused (nothing is sampled).
* Trust region: ``KL(pi_old(.|o) || pi(.|o)) = sum_{a available} pi_old(a|o) (log pi_old(a|o) -
  log pi(a|o))``, exact, with both policies masked by the availability at the recorded state; the
  record of a pass is the old policy's masked log-probabilities and the mask.
* Evaluation: the most likely available action (a categorical's arg-max, HAPPO's deterministic
  action).

Agents whose policies have the same structure (observation size, layers, number of actions)
sample in one batched network call (:meth:`CategoricalCandidatePolicy.start_stacked_sampling`,
the counterpart of the diffusion actor's ``StackedHead``).
"""

from __future__ import annotations

import weakref
from typing import NamedTuple, Sequence

import gymnasium
import torch
import torch.nn.functional as F
from torch import nn

from harl.models.base.distributions import UNAVAILABLE_LOGIT, masked_entropy, masked_kl
from harl.models.base.mlp import MLPBase
from harl.models.base.stacked import StackedLayers, layers_key
from harl.models.policy_models.candidate_policy import ActionCodec, CandidatePolicy, CandidateSample
from harl.utils.errors import ConfigError
from harl.utils.models_tools import init_linear

Tensor = torch.Tensor


def masked_log_probs(logits: Tensor, available: Tensor | None) -> Tensor:
    """Log-probabilities of the softmax over the available actions, ``(*lead, n)``; an
    unavailable action gets ``~UNAVAILABLE_LOGIT`` (its probability is exactly 0 in float32)."""
    if available is not None:
        logits = logits.masked_fill(~available.bool(), UNAVAILABLE_LOGIT)
    return F.log_softmax(logits, dim=-1)


def gumbel_ranks(logits: Tensor, n: int) -> Tensor:
    """``n`` Gumbel-max samples per state as the ranks of the perturbed logits, scaled into
    ``[-1, 1]``: ``(n, *lead, dim)``. The arg-max of the ranks over any set of actions is the
    arg-max of ``logits + g`` over that set, a sample of the softmax restricted to it."""
    u = torch.rand(n, *logits.shape, device=logits.device).clamp_min(torch.finfo(logits.dtype).tiny)
    perturbed = logits - torch.log(-torch.log(u))
    ranks = perturbed.argsort(-1).argsort(-1).to(logits.dtype)
    return 2.0 * ranks / max(logits.shape[-1] - 1, 1) - 1.0


class CategoricalRecord(NamedTuple):
    """The sampling actor's masked log-probabilities and the availability mask (float), both
    ``(*lead, n)``."""

    log_probs: Tensor
    available: Tensor


class _CategoricalPass:
    """A pass without denoising steps: the candidates are drawn when it starts (module doc)."""

    steps_left = 0

    def __init__(self, codec: ActionCodec, logits: Tensor, n: int, record: bool) -> None:
        self.codec, self.logits, self.record = codec, logits, record
        self.x = gumbel_ranks(logits, n)

    def step(self) -> None:
        raise RuntimeError("a categorical sampling pass has no denoising steps")

    def finish(self, available: Tensor | None, targets: bool = True) -> CandidateSample:
        x = self.x if available is None else self.codec.target(self.x, available)
        record = None
        if self.record:
            mask = (
                torch.ones_like(self.logits)
                if available is None
                else available.to(self.logits.dtype).expand_as(self.logits)
            )
            record = CategoricalRecord(masked_log_probs(self.logits, mask), mask)
        target = (x if available is not None else self.codec.target(x)) if targets else None
        return CandidateSample(x, target, record)


def _parameter_versions(policies: Sequence[CategoricalCandidatePolicy]) -> tuple:
    # every in-place write (optimizer steps, load_state_dict, the line search's copies) bumps
    # _version; a replaced tensor has another address
    return tuple((p.data_ptr(), p._version) for policy in policies for p in policy.watched_parameters)


class CategoricalCandidatePolicy(CandidatePolicy):
    """``softmax(logits(o))`` over the available actions, ``MLPBase`` then a linear logits layer.

    Args:
        args: model keys ``hidden_sizes``, ``activation_func``, ``use_feature_normalization``,
            ``initialization_method``, ``gain`` (of the logits layer).
        obs_space: Box ``(d,)``.
        act_space: Discrete; anything else is a :class:`ConfigError`.
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
        if not isinstance(act_space, gymnasium.spaces.Discrete):
            raise ConfigError(
                f"actor 'categorical' needs a Discrete action space, got {act_space}; use --actor diffusion "
                "or --actor gaussian for Box actions"
            )
        self.codec = ActionCodec(act_space)
        self.base = MLPBase(args, obs_space.shape)
        self.logits_layer = init_linear(
            args["hidden_sizes"][-1], self.codec.dim, args["initialization_method"], args["gain"]
        )
        self._stack_key = (type(self), self.codec.dim, layers_key(self.stack_layers()))
        # the stacked parameter sets of the groups this policy leads (start_stacked_sampling),
        # and the parameters it watches (the Parameter objects stay for the module's life)
        self.stacks_cache: dict = {}
        self.watched_parameters = tuple(self.parameters())
        self.to(device)

    def logits(self, obs: Tensor) -> Tensor:
        """Unmasked logits ``(*lead, n)``."""
        return self.logits_layer(self.base(obs))

    def stack_layers(self) -> list[nn.Module]:
        """The network as a sequence of layers (for :class:`StackedLayers`)."""
        return [*self.base.layers(), self.logits_layer]

    def stack_key(self) -> tuple:
        """Equal for categorical policies one :class:`StackedLayers` call can batch (same
        observation size, layers and number of actions)."""
        return self._stack_key

    def start_sampling(self, obs: Tensor, n: int, record: bool = False) -> _CategoricalPass:
        return _CategoricalPass(self.codec, self.logits(obs), n, record)

    @staticmethod
    @torch.no_grad()
    def start_stacked_sampling(
        policies: Sequence[CategoricalCandidatePolicy], obs: Sequence[Tensor], n: int, record: bool = False
    ) -> _CategoricalPass:
        """One pass for ``G`` policies with equal :meth:`stack_key`, ``obs[g]`` ``(*lead, d)``:
        the logits of all of them in one batched call per layer; ``x`` ``(n, G, *lead, n_actions)``.
        The stacked weights are kept until one of the policies' parameters changes."""
        first = policies[0]
        key = tuple(id(p) for p in policies)
        versions = _parameter_versions(policies)
        entry = first.stacks_cache.get(key)
        if entry is None or entry[1] != versions or not all(ref() is p for ref, p in zip(entry[0], policies)):
            entry = ([weakref.ref(p) for p in policies], versions, StackedLayers([p.stack_layers() for p in policies]))
            first.stacks_cache[key] = entry
        lead = obs[0].shape[:-1]
        stacked_obs = torch.stack(list(obs)).reshape(len(obs), -1, obs[0].shape[-1])
        logits = entry[2](stacked_obs).view(len(obs), *lead, first.codec.dim)
        return _CategoricalPass(first.codec, logits, n, record)

    @torch.no_grad()
    def eval_actions(self, obs: Tensor, available: Tensor | None = None) -> Tensor:
        """The most likely available action, as its ``+-1`` code."""
        return self.codec.target(self.logits(obs), available)

    def surrogate_losses(
        self, obs: Tensor, targets: Tensor, available: Tensor | None, n_entropy: int
    ) -> tuple[Tensor, Tensor]:
        """``-log pi(a|o)`` of the candidates' actions (the arg-max of each ``+-1`` target),
        ``(C, B)``, and ``-H(pi(.|o))`` ``(B,)`` (exact; ``n_entropy`` unused)."""
        log_probs = masked_log_probs(self.logits(obs), available)
        actions = targets.argmax(-1, keepdim=True)
        nll = -log_probs.expand(*targets.shape).gather(-1, actions).squeeze(-1)
        return nll, -masked_entropy(log_probs, available)

    def kl_from_record(self, obs: Tensor, record: CategoricalRecord) -> Tensor:
        """Exact ``KL(pi_old || pi)`` over the available actions of the recorded states, ``(*lead,)``."""
        return masked_kl(record.log_probs, masked_log_probs(self.logits(obs), record.available), record.available)
