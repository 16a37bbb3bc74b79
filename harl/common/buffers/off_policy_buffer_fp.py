"""Replay buffer for the Feature-Pruned (FP) state: one state, reward and done per agent."""

from __future__ import annotations

import numpy as np

from harl.common.buffers.off_policy_buffer_base import OffPolicyBufferBase


class OffPolicyBufferFP(OffPolicyBufferBase):
    """``N`` critic streams, one per agent: agent ``i``'s n-step window stops at its own done
    (death or episode end), and its next observation is taken at that window's end (HARL).

    Batch shapes: ``share_obs (B, N, s)``, ``rewards``/``dones``/``terms``/``gammas``
    ``(B, N, 1)``. Same constructor as :class:`OffPolicyBufferBase`.
    """

    @property
    def n_streams(self) -> int:
        return self.num_agents

    def _share_to_streams(self, share_obs: np.ndarray) -> np.ndarray:
        return share_obs

    def _td_to_streams(
        self, rewards: np.ndarray, dones: np.ndarray, episode_done: np.ndarray, bad: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        term = dones & ~bad[:, None]
        return rewards[..., None], dones[..., None], term[..., None]

    def _from_streams(self, x: np.ndarray) -> np.ndarray:
        return x
