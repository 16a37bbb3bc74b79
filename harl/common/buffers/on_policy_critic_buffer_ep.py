"""Critic buffer for an environment-provided (EP) state: one value per environment."""

from __future__ import annotations

import gymnasium
import torch

from harl.common.buffers.on_policy_buffer_utils import OnPolicyCriticBufferBase


class OnPolicyCriticBufferEP(OnPolicyCriticBufferBase):
    """Layout ``(T + 1, E, ...)``; ``share_obs`` is ``(T + 1, E, s)``, values ``(T + 1, E, 1)``.

    Args:
        args: ``{**train, **model, **algo}`` config (``episode_length``, ``n_rollout_threads``,
            ``hidden_sizes``, ``recurrent_n``, ``gamma``, ``gae_lambda``, ``use_gae``,
            ``use_proper_time_limits``).
        share_obs_space: the centralised observation space.
        obs_device: keep ``share_obs`` as a tensor there; ``None``: numpy.
    """

    def __init__(self, args: dict, share_obs_space: gymnasium.Space, obs_device: torch.device | None = None) -> None:
        super().__init__(args, share_obs_space, lead_shape=(args["n_rollout_threads"],), obs_device=obs_device)
