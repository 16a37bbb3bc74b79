"""Multi-agent off-policy runner: MADDPG, MATD3."""

from __future__ import annotations

import numpy as np

from harl.common.sequential_update import sequential_round
from harl.runners.off_policy_actor_critic_runner import OffPolicyActorCriticRunner


class OffPolicyMARunner(OffPolicyActorCriticRunner):
    """MADDPG, MATD3: simultaneous updates against the replay buffer's stored joint action."""

    def train_actors(self, batch, samples):
        stored = self.critic.encode_actions(batch.actions)
        order = np.arange(self.num_agents)
        return sequential_round(order, stored, self.update_agent_fn(batch), None), [logp for _, logp in samples]
