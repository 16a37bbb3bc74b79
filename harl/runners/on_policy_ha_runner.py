"""Heterogeneous-agent on-policy runner: HAPPO, HATRPO and HAA2C.

Agents update one after another (a fresh random order each training phase, or a fixed one). Agent
``i_m`` optimises its surrogate weighted by the product of its predecessors' probability ratios
``M = prod_{j<m} pi_new^{i_j}(a|o) / pi_old^{i_j}(a|o)`` (HAPPO's factor), so every update
accounts for the policies its predecessors have just become.
"""

from __future__ import annotations

import numpy as np
import torch

from harl.algorithms.actors.on_policy_base import aggregate_ratio
from harl.common.sequential_update import update_order
from harl.runners.on_policy_base_runner import OnPolicyBaseRunner
from harl.utils.finite import blame
from harl.utils.models_tools import to_numpy


class OnPolicyHARunner(OnPolicyBaseRunner):
    """Sequential, factor-weighted actor updates (Multi-Agent Advantage Decomposition)."""

    def train_actors(self, advantages: np.ndarray) -> list[dict[str, float]]:
        factor = np.ones((self.episode_length, self.n_rollout_threads, 1), dtype=np.float32)
        infos: list[dict[str, float]] = [{} for _ in range(self.num_agents)]
        for agent_id in update_order(self.num_agents, self.fixed_order):
            self.actor_buffer[agent_id].update_factor(factor)
            old_log_probs = self.rollout_log_probs(agent_id)
            with blame(f"agent {agent_id}"):
                infos[agent_id] = self.actor[agent_id].train(
                    self.actor_buffer[agent_id], self.agent_advantages(advantages, agent_id), self.state_type
                )
            new_log_probs = self.rollout_log_probs(agent_id)
            # M <- M * pi_new / pi_old, aggregated over action dimensions like the actor's ratio
            ratio = aggregate_ratio(new_log_probs, old_log_probs, self.action_aggregation)
            factor = factor * to_numpy(ratio).reshape(factor.shape)
        return infos

    @torch.no_grad()
    def rollout_log_probs(self, agent_id: int) -> torch.Tensor:
        """Log-probabilities ``(T * E, a)`` of the rollout's actions under the agent's current actor."""
        buffer = self.actor_buffer[agent_id]
        rnn_states = buffer.rnn_states[0:1] if self.use_recurrent else buffer.rnn_states[:-1]
        available = buffer.available_actions
        log_probs, _, _ = self.actor[agent_id].evaluate_actions(
            _time_major(buffer.obs[:-1]),
            _time_major(rnn_states),
            _time_major(buffer.actions),
            _time_major(buffer.masks[:-1]),
            None if available is None else _time_major(available[:-1]),
            _time_major(buffer.active_masks[:-1]),
        )
        return log_probs


def _time_major(x: np.ndarray) -> np.ndarray:
    """``(T, E, ...) -> (T * E, ...)``: the layout the recurrent layer unrolls over time."""
    return x.reshape(-1, *x.shape[2:])
