"""Replay buffer for the Environment-Provided (EP) state: one state and one team reward per step."""

from __future__ import annotations

import numpy as np

from harl.common.buffers.off_policy_buffer_base import OffPolicyBufferBase


class OffPolicyBufferEP(OffPolicyBufferBase):
    """One critic stream. The state is agent 0's shared observation and the reward agent 0's
    (HARL's convention: EP assumes a team reward); the episode ends when the environment resets.

    Batch shapes: ``share_obs (B, s)``, ``rewards``/``dones``/``terms``/``gammas`` ``(B, 1)``.
    Same constructor as :class:`OffPolicyBufferBase`.
    """

    n_streams = 1

    def _share_to_streams(self, share_obs: np.ndarray) -> np.ndarray:
        return share_obs[:, :1]

    def _td_to_streams(
        self, rewards: np.ndarray, dones: np.ndarray, episode_done: np.ndarray, bad: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        term = episode_done & ~bad
        return rewards[:, :1, None], episode_done[:, None, None], term[:, None, None]

    def _from_streams(self, x: np.ndarray) -> np.ndarray:
        return x[:, 0]
