"""Rollout storage for one actor (HARL's ``OnPolicyActorBuffer``)."""

from __future__ import annotations

import copy
from typing import Iterator, NamedTuple, Sequence

import gymnasium
import numpy as np
import torch

from harl.common.buffers import storage
from harl.common.buffers.on_policy_buffer_utils import (
    StepArrays,
    chunked_recurrent_batches,
    feed_forward_batches,
    naive_recurrent_batches,
)
from harl.utils.models_tools import get_shape_from_act_space, get_shape_from_obs_space


class ActorBatch(NamedTuple):
    """One actor mini-batch (fields in HARL's order, so it also unpacks like HARL's tuple).

    ``available_actions`` is None for Box actions, ``factor`` is None until ``update_factor``.
    """

    obs: storage.Storage
    rnn_states: np.ndarray
    actions: np.ndarray
    masks: np.ndarray
    active_masks: np.ndarray
    old_action_log_probs: np.ndarray
    advantages: np.ndarray
    available_actions: np.ndarray | None
    factor: np.ndarray | None


class OnPolicyActorBuffer:
    """Layout ``(T + 1, E, ...)`` for inputs and ``(T, E, ...)`` for what the actor produced.

    Args:
        args: ``{**train, **model, **algo}`` config (``episode_length``, ``n_rollout_threads``,
            ``hidden_sizes``, ``recurrent_n``).
        obs_space: the agent's observation space.
        act_space: the agent's action space; ``available_actions`` exists only for Discrete.
        obs_device: keep ``obs`` as a tensor on this device (environments that hand out
            observations as tensors, :mod:`~harl.common.buffers.storage`); ``None``: numpy.
    """

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.Space,
        act_space: gymnasium.Space,
        obs_device: torch.device | None = None,
    ) -> None:
        self.episode_length = args["episode_length"]
        self.n_rollout_threads = args["n_rollout_threads"]
        steps, envs = self.episode_length + 1, self.n_rollout_threads
        act_dim = get_shape_from_act_space(act_space)

        self.obs = storage.zeros((steps, envs, *get_shape_from_obs_space(obs_space)), obs_device)
        self.rnn_states = np.zeros((steps, envs, args["recurrent_n"], args["hidden_sizes"][-1]), np.float32)
        self.available_actions = (
            np.ones((steps, envs, act_space.n), np.float32)
            if isinstance(act_space, gymnasium.spaces.Discrete)
            else None
        )
        self.actions = np.zeros((self.episode_length, envs, act_dim), np.float32)
        # One log-prob per action dimension (Discrete: 1), see distributions.py.
        self.action_log_probs = np.zeros((self.episode_length, envs, act_dim), np.float32)
        # masks[t] = 0: reset the rnn state before step t. active_masks[t] = 0: agent was dead.
        self.masks = np.ones((steps, envs, 1), np.float32)
        self.active_masks = np.ones_like(self.masks)
        # HAPPO/HATRPO/HAA2C: product of the policy ratios of the agents updated before this one.
        self.factor: np.ndarray | None = None
        self.step = 0

    def update_factor(self, factor: np.ndarray) -> None:
        """Store the ``(T, E, 1)`` product-of-ratios factor ``M`` for this agent's update."""
        self.factor = np.array(factor, dtype=np.float32, copy=True)

    def insert(
        self,
        obs: storage.Storage,
        rnn_states: np.ndarray,
        actions: np.ndarray,
        action_log_probs: np.ndarray,
        masks: np.ndarray,
        active_masks: np.ndarray | None = None,
        available_actions: np.ndarray | None = None,
    ) -> None:
        """Store one step: ``actions``/``action_log_probs`` belong to the current step, the rest to the next."""
        self.obs[self.step + 1] = storage.as_stored(obs, self.obs)
        self.rnn_states[self.step + 1] = rnn_states
        self.actions[self.step] = actions
        self.action_log_probs[self.step] = action_log_probs
        self.masks[self.step + 1] = masks
        if active_masks is not None:
            self.active_masks[self.step + 1] = active_masks
        if available_actions is not None:
            self.available_actions[self.step + 1] = available_actions
        self.step = (self.step + 1) % self.episode_length

    def after_update(self) -> None:
        """Carry the last observation and states over as the first entry of the next rollout."""
        self.obs[0] = self.obs[-1]
        self.rnn_states[0] = self.rnn_states[-1]
        self.masks[0] = self.masks[-1]
        self.active_masks[0] = self.active_masks[-1]
        if self.available_actions is not None:
            self.available_actions[0] = self.available_actions[-1]

    @classmethod
    def concatenate(cls, buffers: Sequence[OnPolicyActorBuffer]) -> OnPolicyActorBuffer:
        """One buffer holding every buffer's environments side by side (``E * len(buffers)``).

        Used for parameter sharing: each agent's rollout becomes extra trajectories of a single
        policy, which keeps the time-major layout valid for recurrent generators.
        The factor is dropped (parameter sharing is for MAPPO, which has none).
        """
        merged = copy.copy(buffers[0])
        for name in ("obs", "rnn_states", "actions", "action_log_probs", "masks", "active_masks"):
            setattr(merged, name, storage.concatenate([getattr(b, name) for b in buffers], axis=1))
        if merged.available_actions is not None:
            merged.available_actions = np.concatenate([b.available_actions for b in buffers], axis=1)
        merged.n_rollout_threads = sum(b.n_rollout_threads for b in buffers)
        merged.factor = None
        return merged

    def _step_arrays(self, advantages: np.ndarray) -> tuple[StepArrays, np.ndarray]:
        steps = {
            "obs": self.obs[:-1],
            "actions": self.actions,
            "masks": self.masks[:-1],
            "active_masks": self.active_masks[:-1],
            "old_action_log_probs": self.action_log_probs,
            "advantages": np.asarray(advantages, np.float32).reshape(self.episode_length, -1, 1),
            "available_actions": None if self.available_actions is None else self.available_actions[:-1],
            "factor": self.factor,
        }
        return steps, self.rnn_states[:-1]

    @staticmethod
    def _as_batches(batches: Iterator[StepArrays]) -> Iterator[ActorBatch]:
        for b in batches:
            yield ActorBatch(
                b["obs"],
                b["rnn_states"],
                b["actions"],
                b["masks"],
                b["active_masks"],
                b["old_action_log_probs"],
                b["advantages"],
                b["available_actions"],
                b["factor"],
            )

    def feed_forward_generator_actor(self, advantages: np.ndarray, actor_num_mini_batch: int) -> Iterator[ActorBatch]:
        """Shuffled independent samples (MLP policy); ``advantages`` is ``(T, E, 1)``."""
        return self._as_batches(feed_forward_batches(*self._step_arrays(advantages), actor_num_mini_batch))

    def naive_recurrent_generator_actor(
        self, advantages: np.ndarray, actor_num_mini_batch: int
    ) -> Iterator[ActorBatch]:
        """Whole trajectories from the rollout start (recurrent policy)."""
        return self._as_batches(naive_recurrent_batches(*self._step_arrays(advantages), actor_num_mini_batch))

    def recurrent_generator_actor(
        self, advantages: np.ndarray, actor_num_mini_batch: int, data_chunk_length: int
    ) -> Iterator[ActorBatch]:
        """Chunks of ``data_chunk_length`` steps (recurrent policy)."""
        return self._as_batches(
            chunked_recurrent_batches(*self._step_arrays(advantages), actor_num_mini_batch, data_chunk_length)
        )
