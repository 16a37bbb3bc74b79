"""Heterogeneous-agent off-policy runner: HASAC, HADDPG, HATD3."""

from __future__ import annotations

import torch

from harl.common.sequential_update import sequential_round, update_order
from harl.runners.off_policy_actor_critic_runner import OffPolicyActorCriticRunner


class OffPolicyHARunner(OffPolicyActorCriticRunner):
    """HASAC, HADDPG, HATD3: sequential updates, each agent against its predecessors' new actions."""

    def train_actors(self, batch, samples):
        actions = [a for a, _ in samples]
        logps = [logp for _, logp in samples]

        def resample(agent_id: int):
            with torch.no_grad():
                action, logps[agent_id] = self.actor[agent_id].sample(
                    batch.obs[agent_id], batch.available_actions[agent_id]
                )
            return action

        order = update_order(self.num_agents, self.fixed_order)
        return sequential_round(order, actions, self.update_agent_fn(batch), resample), logps
