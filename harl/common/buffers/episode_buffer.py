"""Replay of whole episodes for recurrent value decomposition (QMIX, VDN).

An episode of ``L`` steps is stored as ``L + 1`` contiguous rows of a ring of ``capacity`` rows:
row ``t`` holds what the agents saw at step ``t`` (observations, state, available actions) and,
for ``t < L``, what followed (the actions, the team reward, whether the step terminated the
episode); row ``L`` is the final observation, which the TD target of step ``L - 1`` needs. The
ring is measured in rows, so short and long episodes cost what they hold, and the oldest
episodes are evicted whole when new rows need their place.

Each of the ``E`` parallel environments fills its own staging area while its episode runs; the
episode moves into the ring when it ends. Sampling returns ``B`` episodes padded to the longest
of them, with a mask of the real transitions.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

import numpy as np
import torch

from harl.utils.errors import ConfigError


class EpisodeBatch(NamedTuple):
    """``B`` episodes padded to ``T + 1`` rows (``T`` transitions).

    ``obs (B, T+1, N, d)``, ``state (B, T+1, s)``, ``available (B, T+1, N, n)`` bool,
    ``actions (B, T+1, N)`` int64 (row ``T`` and padding hold 0), ``reward (B, T)``,
    ``terminated (B, T)`` (1 where the step ended the episode by termination, not a time limit),
    ``mask (B, T)`` (1 for real transitions).
    """

    obs: torch.Tensor
    state: torch.Tensor
    available: torch.Tensor
    actions: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> EpisodeBatch:
        return EpisodeBatch(*(x.to(device) for x in self))


class EpisodeReplayBuffer:
    """Ring of episode rows with per-environment staging (module doc).

    Args:
        capacity: rows in the ring (``buffer_size``); at least one longest episode.
        n_envs: ``E``, the parallel environments feeding it.
        n_agents, obs_dim, state_dim, n_actions: ``N``, ``d`` (the largest observation: smaller
            ones are zero-padded), ``s``, ``n`` (the largest action count).
    """

    def __init__(self, capacity: int, n_envs: int, n_agents: int, obs_dim: int, state_dim: int, n_actions: int) -> None:
        self.capacity, self.n_envs = int(capacity), int(n_envs)
        self.shapes: dict[str, tuple[tuple[int, ...], Any]] = {
            "obs": ((n_agents, obs_dim), np.float32),
            "state": ((state_dim,), np.float32),
            "available": ((n_agents, n_actions), np.bool_),
            "actions": ((n_agents,), np.int64),
            "reward": ((), np.float32),
            "terminated": ((), np.float32),
        }
        self.ring = {name: np.zeros((self.capacity, *shape), dtype) for name, (shape, dtype) in self.shapes.items()}
        self.head = 0  # rows written so far; the next row goes to head % capacity
        self.episodes: deque[tuple[int, int]] = deque()  # (first row, rows), oldest first
        self._index: tuple[np.ndarray, np.ndarray] | None = None  # episodes as arrays, rebuilt on change
        self._staging_len = 64
        self.staging = self._staging_arrays(self._staging_len)
        self.cursor = np.zeros(self.n_envs, dtype=np.int64)  # rows staged per environment

    @property
    def nbytes(self) -> int:
        """Bytes of the ring."""
        return sum(a.nbytes for a in self.ring.values())

    def __len__(self) -> int:
        """Episodes held."""
        return len(self.episodes)

    def _staging_arrays(self, length: int) -> dict[str, np.ndarray]:
        return {name: np.zeros((self.n_envs, length, *shape), dtype) for name, (shape, dtype) in self.shapes.items()}

    def _grow_staging(self) -> None:
        bigger = self._staging_arrays(2 * self._staging_len)
        for name, array in self.staging.items():
            bigger[name][:, : self._staging_len] = array
        self.staging, self._staging_len = bigger, 2 * self._staging_len

    # ----------------------------------------------------------------- writing
    def add_step(
        self,
        obs: np.ndarray,
        state: np.ndarray,
        available: np.ndarray,
        actions: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        ended: np.ndarray,
        final: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> None:
        """One vectorised step of every environment.

        Args:
            obs, state, available: what the agents acted on, ``(E, N, d)``, ``(E, s)``, ``(E, N, n)``.
            actions: ``(E, N)`` the actions taken.
            reward, terminated: ``(E,)`` team reward, 1 where the episode ended by termination.
            ended: ``(E,)`` bool, the episode ended at this step (termination or time limit).
            final: for each ended environment ``e``, its final ``(obs, state, available)``.
        """
        if int(self.cursor.max()) + 2 > self._staging_len:
            self._grow_staging()
        envs = np.arange(self.n_envs)
        for name, value in (
            ("obs", obs),
            ("state", state),
            ("available", available),
            ("actions", actions),
            ("reward", reward),
            ("terminated", terminated),
        ):
            self.staging[name][envs, self.cursor] = value
        self.cursor += 1
        for e in np.flatnonzero(ended):
            t = int(self.cursor[e])
            final_obs, final_state, final_available = final[int(e)]
            row = {
                "obs": final_obs,
                "state": final_state,
                "available": final_available,
                "actions": 0,
                "reward": 0.0,
                "terminated": 0.0,
            }
            for name, value in row.items():
                self.staging[name][e, t] = value
            self._store(e, t + 1)
            self.cursor[e] = 0

    def _store(self, env: int, rows: int) -> None:
        """Move environment ``env``'s staged episode (``rows`` rows) into the ring."""
        if rows > self.capacity:
            raise ConfigError(
                f"an episode of {rows - 1} steps does not fit a replay buffer of {self.capacity} rows: "
                "raise --buffer_size"
            )
        while self.episodes and self.episodes[0][0] < self.head + rows - self.capacity:
            self.episodes.popleft()  # its rows are about to be overwritten
        positions = (self.head + np.arange(rows)) % self.capacity
        for name, array in self.ring.items():
            array[positions] = self.staging[name][env, :rows]
        self.episodes.append((self.head, rows))
        self.head += rows
        self._index = None

    def drop_staged(self) -> None:
        """Forget the episodes in progress (the environments were reset, e.g. on resume)."""
        self.cursor[:] = 0

    # ----------------------------------------------------------------- sampling
    def sample(self, batch_episodes: int) -> EpisodeBatch:
        """``batch_episodes`` episodes drawn uniformly (with replacement), padded to the longest."""
        if not self.episodes:
            raise ValueError("the episode buffer is empty")
        if self._index is None:
            starts, rows = zip(*self.episodes)
            self._index = (np.asarray(starts, dtype=np.int64), np.asarray(rows, dtype=np.int64))
        starts, rows = self._index
        chosen = np.random.randint(0, len(starts), size=batch_episodes)
        starts, rows = starts[chosen], rows[chosen]
        width = int(rows.max())
        offsets = np.arange(width)
        inside = offsets[None, :] < rows[:, None]  # (B, T+1)
        positions = np.where(inside, starts[:, None] + offsets[None, :], starts[:, None]) % self.capacity
        out = {}
        for name, array in self.ring.items():
            gathered = array[positions]
            gathered[~inside] = 0  # padding: no observation, no available action, no reward
            out[name] = torch.from_numpy(gathered)
        mask = torch.from_numpy((offsets[None, 1:] < rows[:, None]).astype(np.float32))  # transition t needs row t+1
        return EpisodeBatch(
            obs=out["obs"],
            state=out["state"],
            available=out["available"],
            actions=out["actions"],
            reward=out["reward"][:, :-1],
            terminated=out["terminated"][:, :-1],
            mask=mask,
        )

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The ring's written rows and the episode index (episodes in progress are not kept: the
        environments are reset on resume)."""
        filled = min(self.head, self.capacity)
        return {
            "capacity": self.capacity,
            "head": self.head,
            "episodes": torch.tensor(list(self.episodes), dtype=torch.int64).reshape(-1, 2),
            "ring": {name: torch.from_numpy(a[:filled]) for name, a in self.ring.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(
                f"checkpointed episode buffer has {state['capacity']} rows, this one "
                f"{self.capacity}: buffer_size must match"
            )
        self.head = int(state["head"])
        for name, array in self.ring.items():
            saved = np.asarray(state["ring"][name])
            array[: len(saved)] = saved
        self.episodes = deque((int(s), int(r)) for s, r in np.asarray(state["episodes"]).reshape(-1, 2))
        self._index = None
        self.drop_staged()
