"""The heterogeneous-agent (HA) sequential update scheme, shared by every HA runner.

In one round the agents update one at a time in ``order``. Before agent ``order[m]`` updates,
the joint action it is trained against holds actions re-sampled from the freshly updated actors
of ``order[:m]`` and the pre-round actions of ``order[m+1:]`` (HARL's Multi-Agent Advantage
Decomposition; the on-policy runner gets the same effect from HAPPO's product of ratios). With
``resample=None`` the round is simultaneous: every agent sees the pre-round joint action (the
MA runners, and HAQO's ``sequential: false`` ablation).
"""

from __future__ import annotations

from typing import Any, Callable, MutableSequence, TypeVar

import numpy as np

Action = TypeVar("Action")


def update_order(num_agents: int, fixed_order: bool) -> np.ndarray:
    """Agent order of one round: ``0..N-1`` or a fresh permutation from numpy's global RNG."""
    if fixed_order:
        return np.arange(num_agents)
    return np.random.permutation(num_agents)


def sequential_round(
    order: np.ndarray,
    joint_actions: MutableSequence[Action],
    update_agent: Callable[[int, MutableSequence[Action]], dict[str, Any]],
    resample: Callable[[int], Action] | None,
) -> dict[int, dict[str, Any]]:
    """Run one round of per-agent updates.

    Args:
        order: the agents in update order.
        joint_actions: every agent's action for the training batch, replaced in place.
        update_agent: ``update_agent(agent_id, joint_actions)`` updates one agent against the
            joint action as it stands and returns its diagnostics.
        resample: ``resample(agent_id)`` draws the agent's action from its updated actor, or
            None for a simultaneous round.

    Returns:
        the diagnostics of every agent, by agent id.
    """
    infos: dict[int, dict[str, Any]] = {}
    for agent_id in order:
        agent_id = int(agent_id)
        infos[agent_id] = update_agent(agent_id, joint_actions)
        if resample is not None:
            joint_actions[agent_id] = resample(agent_id)
    return infos
