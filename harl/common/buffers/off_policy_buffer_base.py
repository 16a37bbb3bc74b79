"""Circular replay buffer of joint transitions with n-step returns computed at sample time.

Layout: every array is ``(R, E, ...)``, row ``r`` holding one vectorised environment step of all
``E`` environments, ``R = buffer_size // E`` rows (the capacity is ``buffer_size`` rounded down to
a multiple of ``E``). The next step of transition ``(r, e)`` in the same episode is ``(r + 1, e)``,
so an n-step window is a slice of rows, gathered for a whole batch at once.

TD quantities are kept per *critic stream*: ``K = 1`` stream for the EP state (one state and one
team reward per step) and ``K = N`` streams for the FP state (one state, reward and done per
agent). Subclasses only say how environment outputs map onto streams.

Termination versus truncation: ``terms`` marks steps after which the return is zero (a true
terminal state, or an agent's death), ``ends`` marks every episode (or, FP, agent) end including
time-limit truncations (``info["bad_transition"]``). An n-step window stops at the first end, at
most ``n_step`` steps, and at the newest stored row; the critic bootstraps from the stored next
state of the window's last step unless that step is a termination. Next states at episode ends
are the true final ones (``info["final_obs"]`` ...), not the auto-reset ones.

Next states are not stored twice: the successor of row ``r`` is row ``r + 1`` (the runner feeds
each step's result back as the next step's input), except where the environment auto-reset
after row ``r`` (its final state is kept in a small first-in-first-out store, ``_FinalStates``)
and for the newest row (whose successor is kept until the next row arrives).

Observations and shared observations are numpy arrays, or tensors on the training device when
the environment hands them out as tensors (:mod:`harl.common.buffers.storage`); a batch then holds
them as tensors there, and the rest as numpy arrays until :meth:`OffPolicyBatch.to`.

Length (about 480 lines): one data structure; insertion, the n-step window gathered for a whole
batch, and checkpointing of the same arrays belong together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium
import numpy as np
import torch

from harl.common.buffers import storage
from harl.envs.base import StepResult
from harl.utils.models_tools import get_shape_from_act_space


class OffPolicyBatch(NamedTuple):
    """A sampled batch; ``B`` transitions, ``N`` agents, ``T`` = EP ``()`` or FP ``(N,)``.

    Actions are in env format (Box ``(B, a_i)``, Discrete ``(B, 1)`` indices). Rewards, dones,
    terms and gammas are the n-step quantities of each critic stream.
    """

    share_obs: Any  # (B, *T, s)
    obs: list[Any]  # per agent (B, d_i)
    actions: list[Any]  # per agent (B, a_i) | (B, 1)
    available_actions: list[Any]  # per agent (B, n_i) 0/1, None for Box agents
    valid_transitions: Any  # (B, N, 1): 1 if the agent was alive when the transition started
    rewards: Any  # (B, *T, 1): sum_{k<m} gamma^k r_{t+k}
    dones: Any  # (B, *T, 1): the window's last step ended the episode (termination or truncation)
    terms: Any  # (B, *T, 1): the window's last step is a termination (no bootstrap)
    gammas: Any  # (B, *T, 1): gamma^m, m = number of steps in the window
    next_share_obs: Any  # (B, *T, s) after the window's last step
    next_obs: list[Any]  # per agent (B, d_i) after the window's last step (FP: that agent's)
    next_available_actions: list[Any]  # per agent (B, n_i) | None

    def to(self, device: torch.device | str) -> "OffPolicyBatch":
        """The same batch as float32 tensors on ``device`` (``None`` entries stay ``None``)."""

        def convert(x: Any) -> Any:
            if x is None:
                return None
            if isinstance(x, list):
                return [convert(v) for v in x]
            return torch.as_tensor(x, dtype=torch.float32, device=device)

        return OffPolicyBatch(*(convert(field) for field in self))


class OffPolicyBufferBase:
    """Replay buffer shared by the EP and FP state types.

    Args:
        args: ``{**algo_args["train"], **algo_args["model"], **algo_args["algo"]}``; keys
            ``buffer_size``, ``batch_size``, ``n_step``, ``gamma``, ``n_rollout_threads``.
        share_obs_space: Box ``(s,)`` (one agent's shared observation space).
        num_agents: ``N``.
        obs_spaces: per agent Box ``(d_i,)``.
        act_spaces: per agent Box or Discrete.
        obs_device: keep observations and shared observations as tensors there (environments
            that hand them out as tensors); ``None``: numpy arrays.
    """

    def __init__(
        self,
        args: dict,
        share_obs_space: gymnasium.spaces.Box,
        num_agents: int,
        obs_spaces: Sequence[gymnasium.spaces.Box],
        act_spaces: Sequence[gymnasium.Space],
        obs_device: torch.device | None = None,
    ) -> None:
        self.n_envs: int = args["n_rollout_threads"]
        self.capacity: int = args["buffer_size"] // self.n_envs  # rows
        if self.capacity < 1:
            raise ValueError(f"buffer_size {args['buffer_size']} < n_rollout_threads {self.n_envs}")
        self.batch_size: int = args["batch_size"]
        self.n_step: int = args["n_step"]
        self.gamma: float = args["gamma"]
        self.num_agents = num_agents
        self.act_spaces = list(act_spaces)
        self.row = 0  # next row to write
        self.filled = 0  # rows holding data
        # whether each agent is alive at the start of the current step, per env (-> valid_transitions)
        self.alive = np.ones((self.n_envs, num_agents), dtype=bool)

        R, E, K, s = self.capacity, self.n_envs, self.n_streams, share_obs_space.shape[0]
        self.share_obs = storage.zeros((R, E, K, s), obs_device)
        self.rewards = np.zeros((R, E, K, 1), dtype=np.float32)
        self.ends = np.zeros((R, E, K, 1), dtype=bool)
        self.terms = np.zeros((R, E, K, 1), dtype=bool)
        self.valid_transitions = np.ones((R, E, num_agents), dtype=bool)
        self.obs = [storage.zeros((R, E, sp.shape[0]), obs_device) for sp in obs_spaces]
        self.actions = [np.zeros((R, E, get_shape_from_act_space(sp)), dtype=np.float32) for sp in act_spaces]
        self.available_actions = [
            np.ones((R, E, sp.n), dtype=bool) if isinstance(sp, gymnasium.spaces.Discrete) else None
            for sp in act_spaces
        ]
        # the successor states of the newest row, and the final states of auto-reset episodes
        # (final_slot[r, e] >= 0: the environment reset after row r)
        self.pending = self._state_template(E)
        self.final_slot = np.full((R, E), -1, dtype=np.int64)
        self.finals = _FinalStates(self._state_template(max(E, R * E // 25)))

    def _state_template(self, rows: int) -> dict[str, storage.Storage]:
        """Zeroed arrays for ``rows`` successor states: the shared state per stream and, per
        agent, the observation and (Discrete) the available actions."""
        template = {"share_obs": storage.zeros_like(self.share_obs, (rows, *self.share_obs.shape[2:]))}
        for i in range(self.num_agents):
            template[f"obs{i}"] = storage.zeros_like(self.obs[i], (rows, self.obs[i].shape[2]))
            if self.available_actions[i] is not None:
                template[f"available_actions{i}"] = np.ones((rows, self.available_actions[i].shape[2]), dtype=bool)
        return template

    def _source(self, name: str) -> np.ndarray:
        """The row storage of a :meth:`_state_template` name ("share_obs", "obs1", ...)."""
        if name == "share_obs":
            return self.share_obs
        base = name.rstrip("0123456789")
        return getattr(self, base)[int(name[len(base) :])]

    def _successors(self, rows: np.ndarray, envs: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """The stored successor states of transitions ``(rows, envs)`` (``(B,)`` each), for the
        arrays ``names`` of :meth:`_state_template`."""
        newest = rows == (self.row - 1) % self.capacity
        slots = self.final_slot[rows, envs]
        reset = slots >= 0
        following = (rows + 1) % self.capacity
        successors = {}
        for name in names:
            value = self._source(name)[following, envs]
            value[newest] = self.pending[name][envs[newest]]
            value[reset] = self.finals.get(name, slots[reset])
            successors[name] = value
        return successors

    # --- state-type specific ----------------------------------------------------------------

    #: number of critic streams K (EP: 1, FP: N)
    n_streams: int

    def _share_to_streams(self, share_obs: np.ndarray) -> np.ndarray:
        """``share_obs (E, N, s)`` -> ``(E, K, s)``."""
        raise NotImplementedError

    def _td_to_streams(
        self, rewards: np.ndarray, dones: np.ndarray, episode_done: np.ndarray, bad: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Env outputs -> per-stream ``rewards``, ``ends``, ``terms``, each ``(E, K, 1)``.

        Args: ``rewards (E, N)``, per-agent ``dones (E, N)``, ``episode_done (E,)`` (the env
        was reset), ``bad (E,)`` (the end is a time-limit truncation).
        """
        raise NotImplementedError

    def _from_streams(self, x: np.ndarray) -> np.ndarray:
        """``(B, K, ...)`` -> the critic's shape: EP ``(B, ...)``, FP unchanged."""
        raise NotImplementedError

    # --- writing ----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of stored transitions."""
        return self.filled * self.n_envs

    def insert(
        self,
        share_obs: np.ndarray,
        obs: Sequence[np.ndarray],
        actions: Sequence[np.ndarray],
        available_actions: Sequence[np.ndarray | None],
        result: StepResult,
    ) -> None:
        """Store one vectorised step ``(s_t, o_t, a_t) -> result``.

        Args:
            share_obs: ``(E, N, s)`` before the step.
            obs: per agent ``(E, d_i)`` before the step.
            actions: per agent ``(E, a_i)`` (Discrete: ``(E, 1)`` indices), as executed.
            available_actions: per agent ``(E, n_i)`` or ``None`` before the step.
            result: the vector env's ``StepResult`` (``obs``, ``share_obs``, ``rewards``,
                ``dones``, ``available_actions``, ``infos``) of this step.
        """
        r = self.row
        infos = result.infos
        episode_done = np.array([info["episode_done"] for info in infos], dtype=bool)
        bad = np.array([info["bad_transition"] for info in infos], dtype=bool)
        dones = np.asarray(result.dones, dtype=bool)
        finished = np.flatnonzero(episode_done)

        if self.filled == self.capacity:  # row r's old transitions, and their final states, go
            self.finals.pop(int((self.final_slot[r] >= 0).sum()))
        self.final_slot[r] = -1
        self.share_obs[r] = self._share_to_streams(storage.as_stored(share_obs, self.share_obs))
        self.rewards[r], self.ends[r], self.terms[r] = self._td_to_streams(
            np.asarray(result.rewards), dones, episode_done, bad
        )
        # the step's successor states: the next row's inputs, kept apart until that row arrives
        self.pending["share_obs"][:] = self._share_to_streams(storage.as_stored(result.share_obs, self.share_obs))
        for i in range(self.num_agents):
            self.obs[i][r] = storage.as_stored(obs[i], self.obs[i])
            self.actions[i][r] = np.asarray(actions[i]).reshape(self.n_envs, -1)
            self.pending[f"obs{i}"][:] = storage.as_stored(result.obs[i], self.obs[i])
            if self.available_actions[i] is not None:
                self.available_actions[i][r] = 1 if available_actions[i] is None else available_actions[i]
                nxt = result.available_actions[i]
                self.pending[f"available_actions{i}"][:] = 1 if nxt is None else nxt
        if finished.size:  # envs that auto-reset: their true final states
            final = {
                "share_obs": self._share_to_streams(
                    storage.stack([infos[e]["final_share_obs"] for e in finished], like=self.share_obs)
                )
            }
            for i in range(self.num_agents):
                final[f"obs{i}"] = storage.stack([infos[e]["final_obs"][i] for e in finished], like=self.obs[i])
                if self.available_actions[i] is not None:
                    avail = [infos[e]["final_available_actions"][i] for e in finished]
                    final[f"available_actions{i}"] = np.stack([1 if a is None else a for a in avail])
            self.final_slot[r, finished] = self.finals.push(final)

        self.valid_transitions[r] = self.alive
        self.alive = ~dones
        self.alive[episode_done] = True
        self.row = (r + 1) % self.capacity
        self.filled = min(self.filled + 1, self.capacity)

    def end_open_episodes(self) -> None:
        """Close every episode still running in the newest row, as a truncation.

        Call when the environments are reset outside the normal flow (resume after a kill), so
        that no n-step window runs from the old episode into the new one. The cut bootstraps
        from the stored next state, exactly like a time-limit truncation.
        """
        if self.filled:
            newest = (self.row - 1) % self.capacity
            self.ends[newest] = True
            still_open = np.flatnonzero(self.final_slot[newest] < 0)
            if still_open.size:  # their successors are the pending states, kept as final ones
                self.final_slot[newest, still_open] = self.finals.push(
                    {name: array[still_open] for name, array in self.pending.items()}
                )
        self.alive[:] = True

    # --- sampling ---------------------------------------------------------------------------

    def sample(self) -> OffPolicyBatch:
        """Draw ``batch_size`` transitions uniformly (with replacement) with n-step targets.

        Returns:
            an :class:`OffPolicyBatch` of numpy arrays (observations: of the storage's kind;
            ``.to(device)`` for tensors).
        """
        if self.filled == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        B, E, N, n, R = self.batch_size, self.n_envs, self.num_agents, self.n_step, self.capacity
        t, env = np.divmod(np.random.randint(0, self.filled * E, size=B), E)
        window = (t[:, None] + np.arange(n)) % R  # (B, n) rows of the n-step window
        env_w = env[:, None]

        # the window stops at the first episode end, or at the newest row (whose successor is not
        # stored yet: it bootstraps from its stored next state)
        ends = self.ends[window, env_w]  # (B, n, K, 1)
        n_stored = (self.row - 1 - t) % R + 1  # rows from t to the newest, inclusive
        cut = ends | (np.arange(n) == (n_stored - 1)[:, None])[:, :, None, None]
        used = (np.cumsum(cut, axis=1) - cut) == 0  # no cut strictly before step k
        steps = used.sum(axis=1)  # (B, K, 1), m >= 1
        last = steps - 1

        # n-step return R = sum_{k<m} gamma^k r_{t+k}, bootstrap discount gamma^m
        discounts = (self.gamma ** np.arange(n, dtype=np.float64))[None, :, None, None]
        rewards = (self.rewards[window, env_w] * used * discounts).sum(axis=1)
        gammas = self.gamma ** steps.astype(np.float64)
        dones = np.take_along_axis(ends, last[:, None], axis=1)[:, 0]
        terms = np.take_along_axis(self.terms[window, env_w], last[:, None], axis=1)[:, 0]

        # successor of each stream's last step (FP: agent i's own window for its next obs)
        last_rows = (t[:, None] + last[..., 0]) % R  # (B, K)
        K = self.n_streams
        next_share_obs = storage.zeros_like(self.share_obs, (B, *self.share_obs.shape[2:]))
        agent_next: dict[str, np.ndarray] = {}
        for k in range(K):  # EP: one stream for every agent; FP: agent k's own window
            agents = range(N) if K == 1 else [k]
            names = (
                ["share_obs"]
                + [f"obs{i}" for i in agents]
                + [f"available_actions{i}" for i in agents if self.available_actions[i] is not None]
            )
            successors = self._successors(last_rows[:, k], env, names)
            next_share_obs[:, k] = successors.pop("share_obs")[:, k]
            agent_next.update(successors)

        def at(arrays: list[np.ndarray | None]) -> list[np.ndarray | None]:
            """Per-agent gather at the sampled transitions."""
            return [None if a is None else a[t, env] for a in arrays]

        return OffPolicyBatch(
            share_obs=self._from_streams(self.share_obs[t, env]),
            obs=at(self.obs),
            actions=at(self.actions),
            available_actions=[None if a is None else a.astype(np.float32) for a in at(self.available_actions)],
            valid_transitions=self.valid_transitions[t, env][..., None].astype(np.float32),
            rewards=self._from_streams(rewards.astype(np.float32)),
            dones=self._from_streams(dones.astype(np.float32)),
            terms=self._from_streams(terms.astype(np.float32)),
            gammas=self._from_streams(gammas.astype(np.float32)),
            next_share_obs=self._from_streams(next_share_obs),
            next_obs=[agent_next[f"obs{i}"] for i in range(N)],
            next_available_actions=[
                None if a is None else agent_next[f"available_actions{i}"].astype(np.float32)
                for i, a in enumerate(self.available_actions)
            ],
        )

    def get_mean_rewards(self) -> float:
        """Mean one-step reward over the stored transitions (HARL's log line)."""
        return float(self.rewards[: self.filled].mean())

    # --- checkpoints ------------------------------------------------------------------------

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "share_obs": self.share_obs,
            "rewards": self.rewards,
            "ends": self.ends,
            "terms": self.terms,
            "valid_transitions": self.valid_transitions,
            "final_slot": self.final_slot,
        }
        per_agent = ("obs", "actions", "available_actions")
        for name in per_agent:
            for i, a in enumerate(getattr(self, name)):
                if a is not None:
                    arrays[f"{name}{i}"] = a
        return arrays

    @property
    def nbytes(self) -> int:
        """Memory held by the storage arrays (allocated up front for the full capacity) and the
        successor states kept apart (which grow with the number of episode ends stored)."""
        return (
            sum(a.nbytes for a in self._arrays().values())
            + self.finals.nbytes
            + sum(a.nbytes for a in self.pending.values())
        )

    def state_dict(self) -> dict[str, Any]:
        """Pointers and the filled rows only, as tensors sharing the buffer's memory, so that
        ``torch.save`` writes ``filled / capacity`` of the arrays and makes no in-memory copy."""
        return {
            "capacity": self.capacity,
            "n_envs": self.n_envs,
            "row": self.row,
            "filled": self.filled,
            "alive": torch.from_numpy(self.alive.copy()),
            "arrays": {name: storage.to_saved(a[: self.filled]) for name, a in self._arrays().items()},
            "pending": {name: storage.to_saved(a, copy=True) for name, a in self.pending.items()},
            "finals": self.finals.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a buffer built with the same configuration.

        The environments are reset on resume, so the episodes open at save time are closed as
        truncations (:meth:`end_open_episodes`).
        """
        if (state["capacity"], state["n_envs"]) != (self.capacity, self.n_envs):
            raise ValueError(
                f"checkpointed buffer has {state['capacity']} rows x {state['n_envs']} envs, "
                f"this one {self.capacity} x {self.n_envs}: buffer_size and n_rollout_threads must match"
            )
        if "finals" not in state:
            raise ValueError(
                "the checkpointed replay buffer has the layout of an older version (next states stored "
                "twice); resume it with that version, or start a new run"
            )
        filled = int(state["filled"])
        for name, array in self._arrays().items():
            saved = storage.as_stored(state["arrays"][name], array)
            if saved.shape[1:] != array.shape[1:] or saved.shape[0] != filled:
                raise ValueError(f"checkpointed buffer array {name} has shape {saved.shape}, expected {array.shape}")
            array[:filled] = saved
        self.row, self.filled = int(state["row"]), filled
        for name, array in self.pending.items():
            array[:] = storage.as_stored(state["pending"][name], array)
        self.finals.load_state_dict(state["finals"])
        self.alive = np.asarray(state["alive"]).copy()
        self.end_open_episodes()


class _FinalStates:
    """First-in-first-out store of the final states of auto-reset episodes, addressed by a
    running id (``id % capacity`` is the storage row). Replay rows are overwritten in the order
    they were written, so their final states leave in the order they came; the store doubles
    when an unusual run of short episodes fills it.

    Args:
        arrays: zeroed storage, name -> ``(capacity, ...)`` (see ``_state_template``).
    """

    def __init__(self, arrays: dict[str, storage.Storage]) -> None:
        self.arrays = arrays
        self.first = 0  # id of the oldest live entry
        self.next = 0  # id the next entry gets

    @property
    def capacity(self) -> int:
        return len(self.arrays["share_obs"])

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def push(self, states: dict[str, np.ndarray]) -> np.ndarray:
        """Store ``n`` final states (name -> ``(n, ...)``); returns their ids."""
        n = len(states["share_obs"])
        while self.next + n - self.first > self.capacity:
            self._resize(2 * self.capacity)
        ids = np.arange(self.next, self.next + n)
        for name, value in states.items():
            self.arrays[name][ids % self.capacity] = value
        self.next += n
        return ids

    def pop(self, n: int) -> None:
        """Drop the ``n`` oldest entries."""
        self.first += n

    def get(self, name: str, ids: np.ndarray) -> np.ndarray:
        return self.arrays[name][ids % self.capacity]

    def _resize(self, capacity: int) -> None:
        live = np.arange(self.first, self.next)
        resized = {}
        for name, array in self.arrays.items():
            resized[name] = storage.zeros_like(array, (capacity, *array.shape[1:]))
            resized[name][live % capacity] = array[live % self.capacity]
        self.arrays = resized

    def state_dict(self) -> dict[str, Any]:
        live = np.arange(self.first, self.next) % self.capacity
        return {
            "first": self.first,
            "next": self.next,
            "arrays": {name: storage.to_saved(a[live]) for name, a in self.arrays.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first, self.next = int(state["first"]), int(state["next"])
        while self.next - self.first > self.capacity:
            self._resize(2 * self.capacity)
        live = np.arange(self.first, self.next) % self.capacity
        for name, array in self.arrays.items():
            array[live] = storage.as_stored(state["arrays"][name], array)
