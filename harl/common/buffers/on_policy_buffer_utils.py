"""Logic shared by the on-policy buffers: return computation and mini-batch generators.

The generators work on "step arrays" shaped ``(T, B, ...)``: ``T`` rollout steps of ``B``
independent trajectories (the environments, or environments x agents). Every generator yields
dicts with the same keys as its input (``None`` values pass through) plus ``rnn_states``, the
hidden state each yielded sequence starts from. Sequences are flattened time-major
(row ``t * n + i`` is step ``t`` of sequence ``i``), the layout ``RNNLayer`` expects.
Shuffling draws from torch's RNG, like HARL, so seeding torch makes mini-batches reproducible.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import gymnasium
import numpy as np
import torch

from harl.common.buffers import storage
from harl.common.valuenorm import ValueNorm
from harl.utils.models_tools import get_shape_from_obs_space

# numpy arrays, and observations as tensors where the environment hands them out as tensors
# (harl.common.buffers.storage): the generators index both the same way
StepArrays = dict[str, storage.Storage | None]


def compute_returns(
    rewards: np.ndarray,
    value_preds: np.ndarray,
    masks: np.ndarray,
    bad_masks: np.ndarray,
    gamma: float,
    gae_lambda: float,
    use_gae: bool,
    use_proper_time_limits: bool,
    value_normalizer: ValueNorm | None = None,
) -> np.ndarray:
    """Returns ``R_t`` for ``t < T`` (HARL's semantics), vectorised over all trailing axes.

    Args:
        rewards: ``(T, *lead, 1)``.
        value_preds: ``(T + 1, *lead, 1)`` critic outputs, normalised if ``value_normalizer``
            is given; ``value_preds[T]`` is the bootstrap value of the state after the rollout.
        masks: ``(T + 1, *lead, 1)``; ``masks[t + 1] = 0`` when the episode ended at step ``t``.
        bad_masks: ``(T + 1, *lead, 1)``; ``bad_masks[t + 1] = 0`` when that end was a
            truncation (time limit) rather than a termination.

    With GAE: ``delta_t = r_t + gamma * m_{t+1} V_{t+1} - V_t`` and
    ``A_t = delta_t + gamma * lambda * m_{t+1} A_{t+1}``, ``R_t = A_t + V_t``.
    With proper time limits a truncated step gets ``A_t = 0``, i.e. ``R_t = V_t``: the target
    bootstraps from the critic's own prediction instead of pretending the episode terminated.
    Without GAE: ``R_t = r_t + gamma * m_{t+1} R_{t+1}`` (``R_T = V_T``), again replaced by
    ``V_t`` at truncated steps.
    """
    values = value_preds if value_normalizer is None else value_normalizer.denormalize(value_preds)
    not_truncated = bad_masks if use_proper_time_limits else np.ones_like(bad_masks)
    returns = np.zeros_like(rewards)
    if use_gae:
        gae = np.zeros_like(rewards[0])
        for t in reversed(range(rewards.shape[0])):
            delta = rewards[t] + gamma * masks[t + 1] * values[t + 1] - values[t]
            gae = not_truncated[t + 1] * (delta + gamma * gae_lambda * masks[t + 1] * gae)
            returns[t] = gae + values[t]
    else:
        next_return = values[-1]
        for t in reversed(range(rewards.shape[0])):
            discounted = rewards[t] + gamma * masks[t + 1] * next_return
            returns[t] = not_truncated[t + 1] * discounted + (1.0 - not_truncated[t + 1]) * values[t]
            next_return = returns[t]
    return returns


def _split(num_items: int, num_mini_batch: int, what: str) -> list[np.ndarray]:
    """Shuffle ``range(num_items)`` and cut it into ``num_mini_batch`` near-equal parts."""
    if not 1 <= num_mini_batch <= num_items:
        raise ValueError(f"cannot split {num_items} {what} into {num_mini_batch} mini-batches")
    return np.array_split(torch.randperm(num_items).numpy(), num_mini_batch)


def _select(steps: StepArrays, fn) -> StepArrays:
    return {key: None if value is None else fn(value) for key, value in steps.items()}


def feed_forward_batches(steps: StepArrays, rnn_states: np.ndarray, num_mini_batch: int) -> Iterator[StepArrays]:
    """Independent samples: all ``T * B`` steps shuffled into ``num_mini_batch`` mini-batches."""
    num_steps, num_traj = rnn_states.shape[:2]
    flat = _select({**steps, "rnn_states": rnn_states}, lambda v: v.reshape(num_steps * num_traj, *v.shape[2:]))
    for idx in _split(num_steps * num_traj, num_mini_batch, "samples"):
        yield _select(flat, lambda v: v[idx])


def naive_recurrent_batches(steps: StepArrays, rnn_states: np.ndarray, num_mini_batch: int) -> Iterator[StepArrays]:
    """Whole trajectories: the ``B`` trajectories are shuffled into mini-batches of full length ``T``."""
    num_steps = rnn_states.shape[0]
    for idx in _split(rnn_states.shape[1], num_mini_batch, "trajectories"):
        batch = _select(steps, lambda v: v[:, idx].reshape(num_steps * len(idx), *v.shape[2:]))
        batch["rnn_states"] = rnn_states[0, idx]
        yield batch


def chunked_recurrent_batches(
    steps: StepArrays, rnn_states: np.ndarray, num_mini_batch: int, data_chunk_length: int
) -> Iterator[StepArrays]:
    """Chunks of ``data_chunk_length`` consecutive steps, each restarting from its stored state.

    Each trajectory is cut into ``T / data_chunk_length`` chunks; the chunks are shuffled into
    mini-batches, so one mini-batch mixes chunks from different times and environments.
    """
    num_steps, num_traj = rnn_states.shape[:2]
    if num_steps % data_chunk_length != 0:
        raise ValueError(f"episode_length ({num_steps}) must be a multiple of data_chunk_length ({data_chunk_length})")
    num_chunks = num_traj * num_steps // data_chunk_length

    def to_chunks(v: np.ndarray) -> np.ndarray:
        # (T, B, ...) -> (B, T, ...) -> (num_chunks, L, ...): chunk k covers consecutive steps
        return v.swapaxes(0, 1).reshape(num_chunks, data_chunk_length, *v.shape[2:])

    chunks = _select(steps, to_chunks)
    chunk_start_states = to_chunks(rnn_states)[:, 0]
    for idx in _split(num_chunks, num_mini_batch, "chunks"):
        # (n, L, ...) -> (L, n, ...) -> (L * n, ...): time-major, as RNNLayer expects
        batch = _select(chunks, lambda v: v[idx].swapaxes(0, 1).reshape(data_chunk_length * len(idx), *v.shape[2:]))
        batch["rnn_states"] = chunk_start_states[idx]
        yield batch


class CriticBatch(NamedTuple):
    """One critic mini-batch (fields in HARL's order, so it also unpacks like HARL's tuple)."""

    share_obs: storage.Storage
    rnn_states_critic: np.ndarray
    value_preds: np.ndarray
    returns: np.ndarray
    masks: np.ndarray


class OnPolicyCriticBufferBase:
    """Critic rollout storage with layout ``(T + 1, *lead, ...)``.

    ``lead`` is ``(E,)`` for an environment-provided state (one value per environment) and
    ``(E, N)`` for feature-pruned states (one value per agent); the subclasses only choose it.
    For training, the ``lead`` axes are merged into one trajectory axis. ``obs_device``: keep
    ``share_obs`` as a tensor there (:mod:`~harl.common.buffers.storage`); ``None``: numpy.
    """

    def __init__(
        self,
        args: dict,
        share_obs_space: gymnasium.Space,
        lead_shape: tuple[int, ...],
        obs_device: torch.device | None = None,
    ) -> None:
        self.episode_length = args["episode_length"]
        self.n_rollout_threads = args["n_rollout_threads"]
        self.gamma = args["gamma"]
        self.gae_lambda = args["gae_lambda"]
        self.use_gae = args["use_gae"]
        self.use_proper_time_limits = args["use_proper_time_limits"]
        self._lead_ndim = len(lead_shape)
        rnn_shape = (args["recurrent_n"], args["hidden_sizes"][-1])
        steps = self.episode_length + 1

        self.share_obs = storage.zeros((steps, *lead_shape, *get_shape_from_obs_space(share_obs_space)), obs_device)
        self.rnn_states_critic = np.zeros((steps, *lead_shape, *rnn_shape), np.float32)
        self.value_preds = np.zeros((steps, *lead_shape, 1), np.float32)
        self.returns = np.zeros_like(self.value_preds)
        self.rewards = np.zeros((self.episode_length, *lead_shape, 1), np.float32)
        # masks[t] = 0: the episode ended before step t. bad_masks[t] = 0: that end was a truncation.
        self.masks = np.ones((steps, *lead_shape, 1), np.float32)
        self.bad_masks = np.ones_like(self.masks)
        self.step = 0

    def insert(
        self,
        share_obs: storage.Storage,
        rnn_states_critic: np.ndarray,
        value_preds: np.ndarray,
        rewards: np.ndarray,
        masks: np.ndarray,
        bad_masks: np.ndarray,
    ) -> None:
        """Store one step: ``value_preds``/``rewards`` belong to the current step, the rest to the next."""
        self.share_obs[self.step + 1] = storage.as_stored(share_obs, self.share_obs)
        self.rnn_states_critic[self.step + 1] = rnn_states_critic
        self.value_preds[self.step] = value_preds
        self.rewards[self.step] = rewards
        self.masks[self.step + 1] = masks
        self.bad_masks[self.step + 1] = bad_masks
        self.step = (self.step + 1) % self.episode_length

    def after_update(self) -> None:
        """Carry the last observation and states over as the first entry of the next rollout."""
        self.share_obs[0] = self.share_obs[-1]
        self.rnn_states_critic[0] = self.rnn_states_critic[-1]
        self.masks[0] = self.masks[-1]
        self.bad_masks[0] = self.bad_masks[-1]

    def get_mean_rewards(self) -> float:
        """Mean reward per step over the rollout (for logging)."""
        return float(np.mean(self.rewards))

    def compute_returns(self, next_value: np.ndarray, value_normalizer: ValueNorm | None = None) -> None:
        """Fill ``returns`` (unnormalised) from the rollout; see ``compute_returns`` for the maths.

        Args:
            next_value: critic output for the state after the last step, ``(*lead, 1)``,
                normalised when ``value_normalizer`` is given (it is stored in ``value_preds[-1]``).
            value_normalizer: the critic's ``ValueNorm``, or None without value normalisation.
        """
        self.value_preds[-1] = next_value
        self.returns[:-1] = compute_returns(
            self.rewards,
            self.value_preds,
            self.masks,
            self.bad_masks,
            self.gamma,
            self.gae_lambda,
            self.use_gae,
            self.use_proper_time_limits,
            value_normalizer,
        )
        self.returns[-1] = next_value if value_normalizer is None else value_normalizer.denormalize(next_value)

    def _step_arrays(self) -> tuple[StepArrays, np.ndarray]:
        def trajectories(v: np.ndarray) -> np.ndarray:
            # (T + 1, *lead, ...) -> (T, prod(lead), ...)
            return v[:-1].reshape(self.episode_length, -1, *v.shape[1 + self._lead_ndim :])

        steps = {
            "share_obs": trajectories(self.share_obs),
            "value_preds": trajectories(self.value_preds),
            "returns": trajectories(self.returns),
            "masks": trajectories(self.masks),
        }
        return steps, trajectories(self.rnn_states_critic)

    @staticmethod
    def _as_batches(batches: Iterator[StepArrays]) -> Iterator[CriticBatch]:
        for b in batches:
            yield CriticBatch(b["share_obs"], b["rnn_states"], b["value_preds"], b["returns"], b["masks"])

    def feed_forward_generator_critic(self, critic_num_mini_batch: int) -> Iterator[CriticBatch]:
        """Shuffled independent samples (MLP critic)."""
        return self._as_batches(feed_forward_batches(*self._step_arrays(), critic_num_mini_batch))

    def naive_recurrent_generator_critic(self, critic_num_mini_batch: int) -> Iterator[CriticBatch]:
        """Whole trajectories from the rollout start (recurrent critic)."""
        return self._as_batches(naive_recurrent_batches(*self._step_arrays(), critic_num_mini_batch))

    def recurrent_generator_critic(self, critic_num_mini_batch: int, data_chunk_length: int) -> Iterator[CriticBatch]:
        """Chunks of ``data_chunk_length`` steps (recurrent critic)."""
        return self._as_batches(
            chunked_recurrent_batches(*self._step_arrays(), critic_num_mini_batch, data_chunk_length)
        )
