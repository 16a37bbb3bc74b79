"""Multi-agent on-policy runner: MAPPO, every agent updated simultaneously from the same rollout."""

from __future__ import annotations

import numpy as np

from harl.runners.on_policy_base_runner import OnPolicyBaseRunner
from harl.utils.finite import blame


class OnPolicyMARunner(OnPolicyBaseRunner):
    """Simultaneous actor updates; with ``share_param`` one actor trains on all agents' data."""

    def train_actors(self, advantages: np.ndarray) -> list[dict[str, float]]:
        if self.share_param:
            with blame("the shared actor"):
                info = self.actor[0].share_param_train(
                    self.actor_buffer, advantages.copy(), self.num_agents, self.state_type
                )
            return [info]
        infos = []
        for agent_id in range(self.num_agents):
            with blame(f"agent {agent_id}"):
                infos.append(
                    self.actor[agent_id].train(
                        self.actor_buffer[agent_id], self.agent_advantages(advantages, agent_id), self.state_type
                    )
                )
        return infos
