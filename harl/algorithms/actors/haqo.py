"""HAQO: heterogeneous-agent Q-weighted policy optimisation (docs/HAQO.md, "The algorithm as the code implements it").

One :class:`HAQO` instance per agent (one shared with ``share_param``), with a diffusion actor
or, for the ablation ``actor: gaussian``, a squashed Gaussian one, or for the control ``actor:
categorical`` (Discrete spaces only) an exact categorical one. The actor knows nothing about
the critic: every function that scores actions takes ``q_fn(joint_actions (*L, B, A)) ->
(*L, B, 1)``, the minimum of the twin critics at the states of the batch (the runner binds the
states and picks the online or the target critic). The runner calls, with ``actors`` the list
of the agents' HAQO objects:

* each environment step, the behaviour actions (algorithm 3):
  ``select_joint_actions(actors, obs, avail, behavior_candidates, q_fn)``;
* each critic update, the next actions of the TD target (algorithm 2):
  ``select_joint_actions(actors, next_obs, next_avail, target_candidates, q_fn_target)``;
* every ``policy_freq``-th critic update, one actor round (algorithm 4): ``drawn =
  sample_candidates(actors, obs, [a.round_samples for a in actors], avail, record=True)`` (every
  agent's candidates from its actor before the round, one pass), ``acts`` the critic format of
  each agent's first candidate, then for each agent ``i`` in the round's order
  ``actors[i].train(obs[i], acts, i, q_fn, ..., candidates=drawn[i])`` and, with ``sequential:
  true``, ``acts[i] = actors[i].sample_critic_action(obs[i], avail[i])``.

The update of agent ``i`` (:meth:`HAQO.train`), with ``a^-i`` fixed by the runner:

    a_k ~ pi_old(.|o), k = 1..K;  Q_k = min_j Q_j(s, a_k, a^-i);  A_k = Q_k - mean_k Q_k
    (enumerate_discrete, Discrete(n): a_k = every available action, k = 1..n, the means over them)
    w_k = qadv / qcut of A_k / rms(A)                            (Eq. 6 / 7, reward-scale free)
    L   = mean_s sum_{top chosen k} w_k l(a_k | o) / chosen + alpha E_{u ~ U(A)} l(u | o)
                                                                 (Eq. 5 + Eq. 9)
    actor_steps Adam steps on L, then KL(pi_old || pi) <= kl_threshold by line search

where ``l`` is the denoising loss (diffusion) or the negative log-likelihood (Gaussian,
categorical); the Gaussian and the categorical replace the uniform-action term by their exact
entropy, ``-alpha H(pi(.|o))``, and measure the exact ``KL(pi_old || pi)``.

Length (about 510 lines): HAQO's update reads top to bottom (candidates, weights, loss, line
search), beside the candidate selection the runner calls; splitting them would split one
algorithm.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium
import numpy as np
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from harl.algorithms.actors.off_policy_base import OffPolicyComponent
from harl.models.base.distributions import masked_entropy
from harl.models.policy_models.candidate_policy import CandidatePolicy, CandidateSample, record_member, run_passes
from harl.models.policy_models.categorical_candidate_policy import CategoricalCandidatePolicy
from harl.models.policy_models.diffusion_policy import DiffusionPolicy
from harl.models.policy_models.gaussian_candidate_policy import GaussianCandidatePolicy
from harl.models.policy_models.group_sampling import start_group_sampling
from harl.utils.config_ranges import range_problems
from harl.utils.errors import ConfigError
from harl.utils.finite import guarded_step
from harl.utils.models_tools import masked_mean

Tensor = torch.Tensor
QFunction = Callable[[Tensor], Tensor]
ArrayLike = np.ndarray | Tensor

POLICY_CLASSES: dict[str, type[CandidatePolicy]] = {
    "diffusion": DiffusionPolicy,
    "gaussian": GaussianCandidatePolicy,
    "categorical": CategoricalCandidatePolicy,
}


# --- weights and candidate selection (shared by every policy class) ---------------------------


def q_weights(
    q: Tensor,
    q_transform: str,
    qcut_epsilon: float,
    max_weight: float,
    mask: Tensor | None = None,
    candidate_mask: Tensor | None = None,
    weight_scale: str = "batch",
    state_scale_floor: float = 0.25,
) -> Tensor:
    """Non-negative, bounded, reward-scale-invariant weights of ``K`` candidates per state.

    ``A_k = Q_k - V`` with ``V = mean_k Q_k`` (the old actor's value, estimated by its own
    candidates), divided by the root mean square of ``A`` over the batch (states with
    ``mask == 0`` excluded), so that rescaling or shifting every Q leaves the weights unchanged;
    ``qcut_epsilon`` is therefore in units of that spread. ``weight_scale="state"`` divides each
    state's advantages by their own root mean square instead, floored at ``state_scale_floor``
    times the batch's (so a state where the critic barely separates its actions pulls as hard
    as one where it does, up to ``1 / state_scale_floor`` times harder than with ``batch``). Then

    * ``qadv``: ``w = max(0, A - mean_k A)`` (Eq. 6); with this ``V``, ``mean_k A = 0``;
    * ``qcut``: ``w = max(0, A) 1[A >= qcut_epsilon]`` (Eq. 7),

    clipped at ``max_weight``.

    Args:
        q: ``(K, B)`` Q-values of the candidates.
        mask: ``(B,)`` 1 for the states that count, or ``None``.

    Returns:
        ``(K, B)`` weights.
    """
    valid = torch.ones_like(q) if candidate_mask is None else candidate_mask.to(q.dtype)
    count = valid.sum(0).clamp_min(1.0)
    adv = (q - (q * valid).sum(0) / count) * valid
    state_sq = adv.pow(2).sum(0) / count
    scale = masked_mean(state_sq, mask).sqrt()
    if weight_scale == "state":
        scale = torch.maximum(state_sq.sqrt(), state_scale_floor * scale)
    elif weight_scale != "batch":
        raise ValueError(f"weight_scale must be 'batch' or 'state', not {weight_scale!r}")
    adv = adv / scale.clamp_min(torch.finfo(adv.dtype).tiny)
    if q_transform == "qadv":
        w = torch.relu(adv - adv.sum(0) / count)
    elif q_transform == "qcut":
        w = torch.relu(adv) * (adv >= qcut_epsilon)
    else:
        raise ValueError(f"q_transform must be 'qadv' or 'qcut', not {q_transform!r}")
    return (w * valid).clamp(max=max_weight)


def insert_action(joint_actions: Sequence[Tensor], agent_id: int, actions: Tensor) -> Tensor:
    """Joint action ``(K, B, A)``: ``actions (K, B, c_i)`` in slot ``agent_id``, the others
    ``(B, c_j)`` broadcast over the ``K`` candidates."""
    lead = actions.shape[:-1]
    parts = [a.expand(*lead, a.shape[-1]) for a in joint_actions]
    parts[agent_id] = actions
    return torch.cat(parts, dim=-1)


def best_candidates(candidates: Sequence[Tensor], q_fn: QFunction) -> Tensor:
    """For each agent ``i`` the index of ``argmax_k min Q(s, a^i_k, a^-i_0)``, the other agents
    at their first candidate (algorithms 2 and 3). One ``q_fn`` call for all agents and candidates.

    Args:
        candidates: per agent critic-format candidates ``(K, B, c_i)``.

    Returns:
        ``(N, B)`` int64 indices into ``K``.
    """
    first = [c[0] for c in candidates]
    joint = torch.stack([insert_action(first, i, c) for i, c in enumerate(candidates)])
    return q_fn(joint).squeeze(-1).argmax(1)


class JointActions:
    """One action per agent and state, in the format a caller asks for: ``env`` (env format
    ``(B, a_i)``, Discrete ``(B, 1)`` int64) and ``critic`` (critic format ``(B, c_i)``), lists
    over agents. Each is computed when first read (behaviour needs only ``env``, the TD target
    only ``critic``)."""

    def __init__(self, codecs: Sequence[Any], xs: Sequence[Tensor], avails: Sequence[Tensor | None]) -> None:
        self._parts = list(zip(codecs, xs, avails))

    @functools.cached_property
    def env(self) -> list[Tensor]:
        return [c.to_env(x, a) for c, x, a in self._parts]

    @functools.cached_property
    def critic(self) -> list[Tensor]:
        return [c.to_critic(x, a) for c, x, a in self._parts]


@torch.no_grad()
def sample_candidates(
    actors: Sequence[HAQO],
    obs: Sequence[ArrayLike],
    n: int | Sequence[int],
    available_actions: Sequence[ArrayLike | None] | None = None,
    record: bool = False,
    targets: bool = True,
) -> list[CandidateSample]:
    """Candidates of every agent at every state, sampled in one pass: each denoising step makes
    one network call for all agents whose actors can be batched together
    (:func:`start_group_sampling`: the same actor with ``share_param``, diffusion actors of
    the same structure, heterogeneous observations allowed, or categorical actors of the same
    structure) and draw as many candidates, over
    all their candidates and states.

    Args:
        actors: per agent.
        obs: per agent ``(B, d_i)``.
        n: candidates per state, for every agent or per agent.
        available_actions: per agent ``(B, n_i)`` or ``None``, for the Discrete targets and the
            actors with ``condition_on_available``.
        record: keep what :meth:`CandidatePolicy.kl_from_record` needs (the first candidate's
            chain).
        targets: compute the candidates' training targets (``False``: ``target`` is ``None``).

    Returns:
        per agent a :class:`CandidateSample` with ``x`` and ``target`` ``(n_i, B, dim_i)``;
        availability masks apply when the codec decodes ``x``.
    """
    counts = [n] * len(actors) if isinstance(n, int) else list(n)
    avails = [actor.as_tensor(a) for actor, a in zip(actors, available_actions or [None] * len(actors))]
    groups: dict[Any, list[int]] = {}
    for i, actor in enumerate(actors):
        key = actor.actor.stack_key()
        groups.setdefault((("actor", id(actor)) if key is None else key, counts[i]), []).append(i)
    inputs = [actor.policy_input(o, a) for actor, o, a in zip(actors, obs, avails)]
    passes = [
        start_group_sampling([actors[i].actor for i in members], [inputs[i] for i in members], count, record)
        for (_, count), members in groups.items()
    ]
    run_passes(passes)
    samples: list[CandidateSample] = [None] * len(actors)  # type: ignore[list-item]
    for members, sampling in zip(groups.values(), passes):
        member_avails = [avails[i] for i in members]
        stacked_avail = None
        if targets and any(a is not None for a in member_avails):  # only the Discrete targets use them
            ones = torch.ones_like(next(a for a in member_avails if a is not None))
            stacked_avail = torch.stack([ones if a is None else a for a in member_avails])
        group = sampling.finish(stacked_avail, targets)  # x, target (n, G, B, dim)
        for g, i in enumerate(members):
            target = None if group.target is None else group.target[:, g]
            samples[i] = CandidateSample(group.x[:, g], target, record_member(group.record, g))
    return samples


@torch.no_grad()
def select_joint_actions(
    actors: Sequence[HAQO],
    obs: Sequence[ArrayLike],
    available_actions: Sequence[ArrayLike | None],
    n_candidates: int,
    q_fn: QFunction | None = None,
) -> JointActions:
    """Every agent's best of ``n_candidates`` samples by ``q_fn`` (:func:`best_candidates`);
    with ``n_candidates == 1`` a plain sample and ``q_fn`` is not needed.

    Behaviour (algorithm 3): ``n_candidates = behavior_candidates``, ``q_fn`` the online critics at the
    current states. TD target (algorithm 2): ``target_candidates``, the target critics at the next
    states.
    """
    candidates = [c.x for c in sample_candidates(actors, obs, n_candidates, available_actions, targets=False)]
    avails = [actor.as_tensor(a) for actor, a in zip(actors, available_actions)]
    codecs = [actor.actor.codec for actor in actors]
    xs = [x[0] for x in candidates]
    if n_candidates > 1:
        if q_fn is None:
            raise ValueError("choosing among several candidates needs q_fn")
        best = best_candidates([c.to_critic(x, a) for c, x, a in zip(codecs, candidates, avails)], q_fn)
        xs = [x[k, torch.arange(k.shape[0], device=k.device)] for x, k in zip(candidates, best)]
    return JointActions(codecs, xs, avails)


# --- the actor ------------------------------------------------------------------------------


class HAQO(OffPolicyComponent):
    """One agent's HAQO actor (module doc), trained by :meth:`train` against a ``q_fn``.

    Args:
        args: ``{**algo_args["model"], **algo_args["algo"]}``; keys ``actor``, ``lr``,
            ``polyak`` (unused: no target actor), ``use_policy_active_masks``,
            ``behavior_candidates``, ``target_candidates``, ``train_candidates``, ``chosen``,
            ``q_transform``, ``qcut_epsilon``, ``max_weight``, ``entropy_alpha``,
            ``entropy_samples``, ``actor_steps``, ``max_grad_norm``, ``drift``, ``kl_threshold``,
            ``kl_measure``, ``kl_chains``, ``ls_steps``, ``condition_on_available`` and the policy's
            model keys.
        obs_space: Box ``(d_i,)``.
        act_space: 1-D Box with finite bounds, or Discrete (only Discrete with ``actor:
            categorical``: ConfigError otherwise).
        device: where the networks live.
    """

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.spaces.Box,
        act_space: gymnasium.Space,
        device: torch.device | str = torch.device("cpu"),
    ) -> None:
        super().__init__(args["polyak"], device)
        if args["actor"] not in POLICY_CLASSES:
            raise ValueError(f"actor must be one of {sorted(POLICY_CLASSES)}, not {args['actor']!r}")
        if args["drift"] not in ("kl_linesearch", "none"):
            raise ValueError(f"drift must be 'kl_linesearch' or 'none', not {args['drift']!r}")
        if args["kl_measure"] not in ("path", "action"):
            raise ValueError(f"kl_measure must be 'path' or 'action', not {args['kl_measure']!r}")
        if args["q_transform"] not in ("qadv", "qcut"):
            raise ValueError(f"q_transform must be 'qadv' or 'qcut', not {args['q_transform']!r}")
        problems = range_problems(args)  # harl/configs/ranges.yaml: counts >= 1, K_t <= K_b, ...
        if problems:
            raise ConfigError(" ".join(problems))

        self.train_candidates: int = args["train_candidates"]
        self.chosen: int = args["chosen"]
        self.q_transform: str = args["q_transform"]
        self.qcut_epsilon: float = args["qcut_epsilon"]
        self.max_weight: float = args["max_weight"]
        self.weight_scale: str = args["weight_scale"]
        self.state_scale_floor: float = args["state_scale_floor"]
        self.entropy_alpha: float = args["entropy_alpha"]
        self.entropy_samples: int = args["entropy_samples"]
        self.actor_steps: int = args["actor_steps"]
        self.policy_freq: int = int(args["policy_freq"])
        self.max_grad_norm: float = args["max_grad_norm"]
        self.line_search: bool = args["drift"] == "kl_linesearch"
        self.kl_threshold: float = args["kl_threshold"]
        self.ls_steps: int = args["ls_steps"]
        # the diffusion actor's trust region on Discrete actions: the KL of the executed actions
        # estimated from kl_chains chains per state instead of the path KL (the exact actors'
        # KL is already the actions')
        discrete = isinstance(act_space, gymnasium.spaces.Discrete)
        if args["kl_measure"] == "action" and args["actor"] == "diffusion" and not discrete:
            raise ConfigError(
                f"kl_measure 'action' estimates the KL of Discrete actions, but this agent has {act_space}; "
                "use kl_measure 'path' on Box actions"
            )
        self.action_kl: bool = args["kl_measure"] == "action" and args["actor"] == "diffusion" and self.line_search
        self.kl_chains: int = args["kl_chains"]
        self.use_policy_active_masks: bool = args["use_policy_active_masks"]
        # Discrete actions scored exhaustively instead of sampled (enumerate_discrete)
        self.enumerates: bool = bool(args["enumerate_discrete"]) and discrete
        if self.enumerates and self.chosen > act_space.n:
            raise ValueError(
                f"chosen ({self.chosen}) must be at most the number of actions ({act_space.n}) with enumerate_discrete"
            )

        # the availability mask as part of the actor's input (Discrete only)
        self.available_input: bool = bool(args["condition_on_available"]) and discrete
        if self.available_input:
            obs_space = gymnasium.spaces.Box(-np.inf, np.inf, (obs_space.shape[0] + act_space.n,), np.float32)
        self.actor: CandidatePolicy = POLICY_CLASSES[args["actor"]](args, obs_space, act_space, self.device)
        self.actor_optimizer = self.make_optimizer(self.actor.parameters(), args["lr"])

    def policy_input(self, obs: ArrayLike, available_actions: ArrayLike | None) -> Tensor:
        """What the policy is conditioned on, ``(B, d_i)`` or with ``condition_on_available``
        ``(B, d_i + n_i)``: the observations, then the availability (all ones when the
        environment gives none)."""
        obs = self.as_tensor(obs)
        if not self.available_input:
            return obs
        avail = self.as_tensor(available_actions)
        if avail is None:
            avail = obs.new_ones(*obs.shape[:-1], self.actor.codec.dim)
        return torch.cat([obs, avail], -1)

    # --- acting -----------------------------------------------------------------------------

    @torch.no_grad()
    def get_actions(self, obs: ArrayLike, available_actions: ArrayLike | None = None, explore: bool = True) -> Tensor:
        """Decentralised actions ``(E, a_i)`` env format, no critic (evaluation, deployment): one
        sample each; ``explore=False``: :meth:`CandidatePolicy.eval_actions` (the diffusion actor
        samples without the last step's noise, and takes the mode of ``eval_samples`` samples for
        Discrete actions; the Gaussian takes its mean, the categorical its most likely available
        action)."""
        obs, avail = self.policy_input(obs, available_actions), self.as_tensor(available_actions)
        x = self.actor.sample(obs, targets=False).x[0] if explore else self.actor.eval_actions(obs, avail)
        return self.actor.codec.to_env(x, avail)

    @torch.no_grad()
    def sample_critic_action(self, obs: ArrayLike, available_actions: ArrayLike | None = None) -> Tensor:
        """One fresh action per state from the current policy, critic format ``(B, c_i)``: the
        runner's ``a^i`` for the agents updated after this one."""
        avail = self.as_tensor(available_actions)
        x = self.actor.sample(self.policy_input(obs, avail), avail, targets=False).x[0]
        return self.actor.codec.to_critic(x, avail)

    # --- update -----------------------------------------------------------------------------

    def train(
        self,
        obs: ArrayLike,
        joint_actions: Sequence[Tensor],
        agent_id: int,
        q_fn: QFunction,
        available_actions: ArrayLike | None = None,
        valid_transition: ArrayLike | None = None,
        candidates: CandidateSample | None = None,
    ) -> dict[str, float]:
        """One HAQO update of this agent (module doc).

        Args:
            obs: this agent's observations ``(B, d_i)`` (without the availability, which
                :meth:`policy_input` appends).
            joint_actions: every agent's action, critic format ``(B, c_j)``; entry ``agent_id``
                is replaced by this agent's candidates.
            agent_id: this agent's slot in the joint action.
            q_fn: ``min_j Q_j(s, .)`` at the batch's states, ``(*L, B, A) -> (*L, B, 1)``.
            available_actions: ``(B, n_i)`` for Discrete agents.
            valid_transition: ``(B, 1)``, 0 where the agent was dead (excluded with
                ``use_policy_active_masks``).
            candidates: :attr:`round_samples` samples of this actor at ``obs``, drawn before
                the update with the record when the line search is on (the runner draws every
                agent's in one pass); ``None``: drawn here.

        Returns:
            ``loss_qv``, ``loss_ent``, ``weight_mean``, ``weight_nonzero``, ``q_mean``,
            ``candidate_spread``, ``grad_norm``, ``time_sampling``, ``time_update``, with the
            line search ``kl_raw``, ``kl``, ``ls_backtracks``, ``ls_evaluations``, ``ls_reverted`` and with
            ``kl_measure: action`` ``action_entropy`` (of the estimated action distribution).
        """
        obs, avail = self.policy_input(obs, available_actions), self.as_tensor(available_actions)
        mask = None
        if self.use_policy_active_masks and valid_transition is not None:
            mask = self.as_tensor(valid_transition).reshape(-1)
        start = time.perf_counter()

        # a_k ~ pi_old(.|o), k = 1..K, scored by min Q with the other agents' actions fixed
        with torch.no_grad():
            if candidates is None:
                candidates = self.actor.sample(obs, avail, self.round_samples, record=self.line_search)
            cand, candidate_mask = self._training_candidates(candidates, avail)
            q = q_fn(insert_action(joint_actions, agent_id, self.actor.codec.to_critic(cand.x, avail))).squeeze(-1)
            weights = q_weights(
                q,
                self.q_transform,
                self.qcut_epsilon,
                self.max_weight,
                mask,
                candidate_mask,
                self.weight_scale,
                self.state_scale_floor,
            )  # Eq. 6 / Eq. 7
            # each state trains on its top `chosen` candidates (1: best-of-K, paper A.10)
            top = weights.topk(self.chosen, dim=0).indices  # (chosen, B)
            w = weights.gather(0, top)
            targets = cand.target.gather(0, top.unsqueeze(-1).expand(-1, -1, cand.target.shape[-1]))
            record = self.actor.action_record(obs, avail, self.kl_chains) if self.action_kl else cand.record
        sampled = time.perf_counter()

        # Eq. 11 without its drift term (the line search below): minimise the Q-weighted (Eq. 5)
        # plus alpha times the uniform-action (Eq. 9) denoising losses
        params = list(self.actor.parameters())
        theta_old = parameters_to_vector(params).detach().clone() if self.line_search else None
        for _ in range(self.actor_steps):
            qv_rows, ent_rows = self.actor.surrogate_losses(obs, targets, avail, self.entropy_samples)
            loss_qv = masked_mean((w * qv_rows).mean(0), mask)  # Eq. 5
            loss_ent = masked_mean(ent_rows, mask)  # Eq. 9 before alpha
            self.actor_optimizer.zero_grad()
            loss = loss_qv + self.entropy_alpha * loss_ent
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(params, self.max_grad_norm)
            guarded_step(self.actor_optimizer, loss, "actor")
        info = self._kl_line_search(obs, record, mask, theta_old) if self.line_search else {}
        if self.action_kl:  # how spread the executed actions were before the update
            info["action_entropy"] = masked_mean(masked_entropy(record.log_probs, record.available), mask).item()

        return {
            "loss_qv": loss_qv.item(),
            "loss_ent": loss_ent.item(),
            "weight_mean": masked_mean(weights.mean(0), mask).item(),
            "weight_nonzero": masked_mean((weights > 0).float().mean(0), mask).item(),
            "q_mean": masked_mean(q.mean(0), mask).item(),
            # mode-collapse signal: spread of the samples drawn at a state, in [-1, 1] units (none
            # with enumerated Discrete candidates: one sample per state is drawn)
            **(
                {"candidate_spread": masked_mean(candidates.x.std(0).mean(-1), mask).item()}
                if len(candidates.x) > 1
                else {}
            ),
            "grad_norm": grad_norm.item(),
            **info,
            "time_sampling": sampled - start,
            "time_update": time.perf_counter() - sampled,
        }

    @property
    def round_samples(self) -> int:
        """Samples per state an actor round draws from this actor before updating it
        (:meth:`train`'s ``candidates``): the training candidates, or with enumerated Discrete
        candidates the one chain the line search and the joint action need."""
        return 1 if self.enumerates else self.train_candidates

    def _training_candidates(
        self, drawn: CandidateSample, avail: Tensor | None
    ) -> tuple[CandidateSample, Tensor | None]:
        """The candidates to weight, ``(K, B, dim)``, and which of them count ``(K, B)`` (``None``:
        all): the drawn samples, or with ``enumerate_discrete`` every action's code (the
        unavailable ones masked out) with the drawn chain's record."""
        if not self.enumerates:
            return drawn, None
        codec, batch = self.actor.codec, drawn.x.shape[1]
        codes = codec.target(torch.eye(codec.dim, device=drawn.x.device)).unsqueeze(1).expand(-1, batch, -1)
        candidate_mask = None if avail is None else avail.bool().T
        return CandidateSample(codes, codes, drawn.record), candidate_mask

    @torch.no_grad()
    def _kl_line_search(self, obs: Tensor, record: Any, mask: Tensor | None, theta_old: Tensor) -> dict[str, float]:
        """Scale the step by ``0.5^j`` with the smallest ``j`` in ``0..ls_steps`` whose ``KL(pi_old ||
        pi) <= kl_threshold`` (paper A.12.4), else undo it: the realised KL never exceeds the threshold.

        Near ``theta_old`` the KL grows as the square of the step, so the full step's KL predicts
        the first ``j`` that fits; the search starts there and moves one halving at a time until it
        has a fitting ``j`` next to a violating one (or ``j = 1``). Wherever the KL grows along the
        step this is the ``j`` that halving from ``j = 0`` finds, with the same parameters, in about
        3 KL evaluations instead of ``1 + j`` (``ls_evaluations``)."""
        params = list(self.actor.parameters())
        step = parameters_to_vector(params) - theta_old

        def kl_at(j: int) -> float:
            if j:
                _write_parameters(theta_old + 0.5**j * step, params)
            return masked_mean(self.actor.kl_from_record(obs, record), mask).item()

        # a NaN KL is a violation too (comparisons with NaN are false)
        kl_raw = kl_at(0)
        kls, j = {0: kl_raw}, 0
        fitting, violating = (0, None) if kl_raw <= self.kl_threshold else (None, 0)
        if fitting is None and self.ls_steps > 0:
            ratio = kl_raw / self.kl_threshold
            j = math.ceil(0.5 * math.log2(ratio)) if math.isfinite(ratio) else 1
            j = min(max(j, 1), self.ls_steps)
            while True:
                kls[j] = kl_at(j)
                if kls[j] <= self.kl_threshold:
                    fitting = j
                    if j - 1 == violating:
                        break
                    j -= 1
                else:
                    violating = j
                    if fitting == j + 1 or j == self.ls_steps:
                        break
                    j += 1
        reverted = fitting is None
        if reverted:
            _write_parameters(theta_old, params)
        elif fitting != j:  # the last evaluation was a violating neighbour
            _write_parameters(theta_old + 0.5**fitting * step, params)
        return {
            "kl_raw": kl_raw,
            "kl": 0.0 if reverted else kls[fitting],
            "ls_backtracks": float(self.ls_steps if reverted else fitting),
            "ls_evaluations": float(len(kls)),
            "ls_reverted": float(reverted),
        }

    # --- checkpoints ------------------------------------------------------------------------

    def _state_objects(self) -> dict[str, Any]:
        return {"actor": self.actor, "actor_optimizer": self.actor_optimizer}

    def save(self, save_dir: str, agent_id: int) -> None:
        """HARL-style weights ``actor_agent<i>.pt``."""
        self.save_weights(save_dir, {f"actor_agent{agent_id}.pt": self.actor})

    def restore(self, model_dir: str, agent_id: int) -> None:
        """Load weights written by :meth:`save` (HARL's ``model_dir``)."""
        self.load_weights(model_dir, {f"actor_agent{agent_id}.pt": self.actor})


def _write_parameters(vector: Tensor, params: Sequence[Tensor]) -> None:
    """Copy ``vector`` into ``params`` in place (``vector_to_parameters`` rebinds ``.data``):
    the parameters keep their storage and their version counters move, which is what
    :func:`~harl.models.policy_models.group_sampling.group_stacks` checks."""
    with torch.no_grad():
        offset = 0
        for p in params:
            p.copy_(vector[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
