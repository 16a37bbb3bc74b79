"""Several agents' candidate policies sampled as one pass (docs/HAQO.md, algorithm 1).

Diffusion actors of identical structure run each denoising step as one batched call over their
stacked weights (:class:`StackedHead`). Stacking and folding the weights costs more than a
step, so the stacks are cached on the group's first denoiser and rebuilt only when a parameter
changed, which is detected by each parameter's storage address and version counter. Every
write to an actor's parameters must therefore be in place (optimiser steps, ``load_state_dict``,
``copy_``): a tensor put in place of another (``param.data = ...``, ``vector_to_parameters``)
could reuse a freed address with a version counter the cache has seen. HAQO's line search
writes in place (``haqo._write_parameters``), and ``tests/test_haqo.py`` fails if an update
moves a parameter's storage.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple, Sequence

import torch

from harl.models.base.stacked import StackedLayers
from harl.models.policy_models.candidate_policy import CandidatePolicy, SamplingPass
from harl.models.policy_models.denoiser import Denoiser
from harl.models.policy_models.diffusion_policy import DiffusionPass, DiffusionPolicy

Tensor = torch.Tensor


class StackedHead:
    """:meth:`Denoiser.head` of ``G`` denoisers of identical structure as one batched call
    (:class:`StackedLayers`), so a denoising step of several agents costs one network call
    (docs/HAQO.md, algorithm 1). Built under ``no_grad`` and kept in the group cache of
    :func:`group_stacks` until a denoiser's parameters change.

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
    return DiffusionPass(first, conditions.unsqueeze(2), x, head, candidate_dim=1, record=record)
