"""MAPPO: PPO for each agent with a centralised critic (Yu et al., 2022)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from harl.algorithms.actors.happo import HAPPO
from harl.common.buffers.on_policy_actor_buffer import ActorBatch, OnPolicyActorBuffer
from harl.envs.base import check_state_type


class MAPPO(HAPPO):
    """HAPPO's update with ``M = 1``: agents update simultaneously, not sequentially."""

    def _factor(self, batch: ActorBatch) -> torch.Tensor:
        return torch.ones((), device=self.device)

    def share_param_train(
        self,
        actor_buffers: Sequence[OnPolicyActorBuffer],
        advantages: np.ndarray,
        num_agents: int,
        state_type: str,
    ) -> dict[str, float]:
        """Train one shared policy on every agent's data.

        Args:
            actor_buffers: the ``num_agents`` agents' buffers (same observation/action spaces).
            advantages: "EP": ``(T, E, 1)`` shared by all agents, standardised here over every
                agent's active steps; "FP": ``(T, E, N, 1)``, already standardised by the runner.
            num_agents: ``N``.
            state_type: "EP" or "FP".
        """
        check_state_type(state_type)
        if state_type == "EP":
            per_agent = [advantages] * num_agents
        else:
            per_agent = [advantages[:, :, agent_id] for agent_id in range(num_agents)]
        # Agents become extra environments of one buffer, so every generator (recurrent
        # included) sees whole per-agent trajectories.
        merged = OnPolicyActorBuffer.concatenate(actor_buffers[:num_agents])
        return self.train(merged, np.concatenate(per_agent, axis=1), state_type)
