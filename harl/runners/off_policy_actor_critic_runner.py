"""The training step of the gradient actor-critic off-policy algorithms (HASAC, HADDPG, HATD3,
MADDPG, MATD3): a critic update on the target policies' next actions, then every
``policy_freq``-th update an actor round whose order the HA and MA runners choose."""

from __future__ import annotations

import torch

from harl.runners.off_policy_base_runner import OffPolicyBaseRunner
from harl.utils.finite import blame


class OffPolicyActorCriticRunner(OffPolicyBaseRunner):
    """Actors trained through the critic's gradient; subclasses choose the round (:meth:`train_actors`)."""

    def train(self) -> dict[str, float]:
        """One gradient update: the critic every time, the actors every ``policy_freq``-th."""
        self.total_it += 1
        batch = self.buffer.sample().to(self.device)
        targets = [
            self.actor[i].get_target_actions(batch.next_obs[i], batch.next_available_actions[i])
            for i in range(self.num_agents)
        ]
        with blame("the critic"):
            critic_info = self.critic.train(batch, [a for a, _ in targets], [logp for _, logp in targets])
        infos = {f"critic/{k}": v for k, v in critic_info.items()}
        if self.total_it % self.policy_freq == 0:
            with torch.no_grad():
                samples = [
                    self.actor[i].sample(batch.obs[i], batch.available_actions[i]) for i in range(self.num_agents)
                ]
            actor_infos, logps = self.train_actors(batch, samples)
            for agent_id, info in actor_infos.items():
                infos.update({f"agent{agent_id}/{k}": v for k, v in info.items()})
            if all(logp is not None for logp in logps):
                with blame("the shared entropy temperature"):
                    infos.update({f"critic/{k}": v for k, v in self.critic.update_alpha(sum(logps)).items()})
            for actor in self.unique_actors():
                actor.soft_update()
            self.critic.soft_update()
        return infos

    def train_actors(self, batch, samples) -> tuple[dict[int, dict[str, float]], list]:
        """Update the actors; returns their diagnostics and the log-probs of the final samples."""
        raise NotImplementedError

    def update_agent_fn(self, batch):
        """``update_agent`` of :func:`sequential_round` for this batch."""

        def update_agent(agent_id: int, joint_actions) -> dict[str, float]:
            with blame(f"agent {agent_id}"):
                return self.actor[agent_id].train(
                    batch.obs[agent_id],
                    batch.share_obs,
                    joint_actions,
                    agent_id,
                    self.critic,
                    batch.available_actions[agent_id],
                    batch.valid_transitions[:, agent_id],
                    batch.obs,
                )

        return update_agent
