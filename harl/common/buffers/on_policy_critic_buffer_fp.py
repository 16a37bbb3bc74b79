"""Critic buffer for feature-pruned (FP) states: one state and value per agent."""

from __future__ import annotations

import gymnasium
import torch

from harl.common.buffers.on_policy_buffer_utils import OnPolicyCriticBufferBase


class OnPolicyCriticBufferFP(OnPolicyCriticBufferBase):
    """Layout ``(T + 1, E, N, ...)``: the EP layout with an agent axis after the environment axis.

    Returns are computed per (environment, agent); for training every (environment, agent)
    pair is one trajectory.

    Args:
        args: as for ``OnPolicyCriticBufferEP``.
        share_obs_space: one agent's centralised observation space.
        num_agents: ``N``.
        obs_device: keep ``share_obs`` as a tensor there; ``None``: numpy.
    """

    def __init__(
        self, args: dict, share_obs_space: gymnasium.Space, num_agents: int, obs_device: torch.device | None = None
    ) -> None:
        super().__init__(
            args, share_obs_space, lead_shape=(args["n_rollout_threads"], num_agents), obs_device=obs_device
        )
