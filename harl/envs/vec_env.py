"""Vectorised multi-agent environments: ``E`` copies of one adapter behind one batched API.

:class:`InProcessVecEnv` steps all environments in the calling process; :class:`SubprocVecEnv`
splits them into contiguous chunks, one chunk per worker process, and exchanges one message per
worker per call. Both give identical results for the same seeds because both step their
environments through :class:`_EnvChunk`.
"""

from __future__ import annotations

import copy
import importlib
import multiprocessing as mp
import signal
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection
from typing import Any

import numpy as np
from gymnasium import spaces

from harl.envs.base import EnvWorkerError, MultiAgentEnv, StepResult

VecResetResult = tuple[list[np.ndarray], np.ndarray, list[np.ndarray | None]]

# How long close() waits for all workers to exit by themselves before killing them (they ignore
# SIGTERM), and then for the kill; a healthy worker exits within milliseconds.
_JOIN_TIMEOUT_S = 2.0
_KILL_TIMEOUT_S = 1.0
# Replies are awaited in slices of at most this long, so that time this process spends stopped
# (SIGSTOP, Ctrl-Z then fg) is not counted against env_reply_timeout as the workers' silence.
_WAIT_SLICE_S = 1.0


@dataclass(frozen=True)
class EnvFactory:
    """A picklable recipe for one environment: ``"package.module:ClassName"`` plus its env_args.

    Worker processes receive the recipe rather than a constructed environment, so nothing but
    a string and a dict of plain values crosses the process boundary.
    """

    target: str
    env_args: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> MultiAgentEnv:
        """Import the adapter class and construct one environment."""
        module_name, _, class_name = self.target.partition(":")
        adapter_cls = getattr(importlib.import_module(module_name), class_name)
        return adapter_cls(copy.copy(self.env_args))  # its own dict, still marked checked if it was


class _EnvChunk:
    """Several environments stepped one after another, their results stacked along axis 0."""

    def __init__(self, factory: EnvFactory, env_ids: list[int], seeds: list[int]) -> None:
        self.env_ids = env_ids
        self.envs = [factory() for _ in env_ids]
        # Seeds apply to the first reset only; later resets continue each env's random stream.
        self._first_seeds: list[int] | None = list(seeds)
        self.current = env_ids[0]  # which env is being stepped, for error messages
        first = self.envs[0]
        self.n_agents = first.n_agents
        self.info = {
            "n_agents": first.n_agents,
            "observation_spaces": list(first.observation_spaces),
            "share_observation_spaces": list(first.share_observation_spaces),
            "action_spaces": list(first.action_spaces),
            "episode_metric_names": tuple(first.episode_metric_names),
            "episode_limit": first.episode_limit,
        }
        self._discrete = [isinstance(space, spaces.Discrete) for space in first.action_spaces]

    def reset(self) -> VecResetResult:
        """Reset every environment of the chunk."""
        seeds = self._first_seeds or [None] * len(self.envs)
        self._first_seeds = None
        per_env = []
        for env_id, env, seed in zip(self.env_ids, self.envs, seeds):
            self.current = env_id
            per_env.append(env.reset(seed))
        obs, share_obs, avail = zip(*per_env)
        return self._stack_obs(obs), _stack(share_obs, np.float32), self._stack_avail(avail)

    def step(self, actions: list[np.ndarray]) -> tuple:
        """Step every environment; auto-reset those whose agents are all done."""
        n_envs = len(self.envs)
        obs_all, share_all, avail_all, infos = [], [], [], []
        rewards = np.empty((n_envs, self.n_agents), dtype=np.float32)
        dones = np.empty((n_envs, self.n_agents), dtype=bool)
        for j, (env_id, env) in enumerate(zip(self.env_ids, self.envs)):
            self.current = env_id
            obs, share_obs, rew, done, info, avail = env.step([a[j] for a in actions])
            rewards[j] = rew
            dones[j] = done
            env_info: dict[str, Any] = {
                "bad_transition": bool(info.get("bad_transition", False)),
                "episode_done": bool(dones[j].all()),
            }
            if env_info["episode_done"]:
                # Copies: adapters may reuse their arrays once the env is reset.
                env_info["final_obs"] = [np.array(o, dtype=np.float32) for o in obs]
                env_info["final_share_obs"] = np.array(share_obs, dtype=np.float32)
                env_info["final_available_actions"] = [
                    None if a is None else np.array(a, dtype=np.float32) for a in avail
                ]
                env_info["episode_metrics"] = dict(info.get("episode_metrics", {}))
                obs, share_obs, avail = env.reset(None)
            obs_all.append(obs)
            share_all.append(share_obs)
            avail_all.append(avail)
            infos.append(env_info)
        return (
            self._stack_obs(obs_all),
            _stack(share_all, np.float32),
            rewards,
            dones,
            self._stack_avail(avail_all),
            infos,
        )

    def close(self) -> None:
        """Close every environment."""
        for env in self.envs:
            env.close()

    def _stack_obs(self, per_env: list) -> list[np.ndarray]:
        return [_stack([o[i] for o in per_env], np.float32) for i in range(self.n_agents)]

    def _stack_avail(self, per_env: list) -> list[np.ndarray | None]:
        return [
            _stack([a[i] for a in per_env], np.float32) if self._discrete[i] else None for i in range(self.n_agents)
        ]


def _stack(arrays: Any, dtype: type) -> np.ndarray:
    return np.asarray(np.stack(arrays), dtype=dtype)


class _VecEnvBase:
    """Attributes and argument checks shared by both vectorised environments."""

    n_envs: int
    n_agents: int
    observation_spaces: list[spaces.Box]
    share_observation_spaces: list[spaces.Box]
    action_spaces: list[spaces.Box | spaces.Discrete]
    episode_metric_names: tuple[str, ...]
    episode_limit: int | None

    def _set_info(self, n_envs: int, info: dict[str, Any]) -> None:
        self.n_envs = n_envs
        for key, value in info.items():
            setattr(self, key, value)

    def _check_actions(self, actions: list[np.ndarray]) -> list[np.ndarray]:
        if len(actions) != self.n_agents:
            raise ValueError(
                f"step() got actions for {len(actions)} agents but the environment has "
                f"{self.n_agents}: pass a list with one (n_envs, action_dim) array per agent"
            )
        actions = [np.asarray(a) for a in actions]
        for i, a in enumerate(actions):
            if a.ndim != 2 or a.shape[0] != self.n_envs:
                raise ValueError(
                    f"actions of agent {i} have shape {a.shape}; expected (n_envs={self.n_envs}, "
                    "action_dim), with action_dim 1 holding the index for a Discrete agent"
                )
        return actions

    def __enter__(self) -> _VecEnvBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]  # defined by both subclasses


class InProcessVecEnv(_VecEnvBase):
    """``n_envs`` environments stepped sequentially in the calling process.

    Environment ``k`` is seeded with ``base_seed + k`` on its first reset. Exceptions raised by
    an environment propagate unchanged, with their original traceback.
    """

    def __init__(self, factory: EnvFactory, n_envs: int, base_seed: int) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be at least 1, got {n_envs}")
        ids = list(range(n_envs))
        self._chunk = _EnvChunk(factory, ids, [base_seed + k for k in ids])
        self._set_info(n_envs, self._chunk.info)

    def reset(self) -> VecResetResult:
        """Reset all environments: obs per agent (E, d_i), share_obs (E, N, s), avail per agent."""
        return self._chunk.reset()

    def step(self, actions: list[np.ndarray]) -> StepResult:
        """Step all environments with one ``(E, a_i)`` array per agent."""
        return StepResult(*self._chunk.step(self._check_actions(actions)))

    @property
    def envs(self) -> list:
        """The environment objects, in env order (for inspection, e.g. agents' positions)."""
        return self._chunk.envs

    def close(self) -> None:
        """Close all environments."""
        self._chunk.close()


def _worker_main(conn: mp_connection.Connection, factory: EnvFactory, env_ids: list[int], seeds: list[int]) -> None:
    """Loop of one worker process: build its chunk, then serve reset/step until told to close."""
    # Ctrl+C and a scheduler's SIGTERM reach the whole process group; the main process writes
    # its final checkpoint, then closes us (a dead parent closes our pipe, which ends us too).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    chunk = None
    try:
        chunk = _EnvChunk(factory, env_ids, seeds)
        conn.send(("ok", chunk.info))
        while True:
            command, payload = conn.recv()
            if command == "step":
                conn.send(("ok", chunk.step(payload)))
            elif command == "reset":
                conn.send(("ok", chunk.reset()))
            else:
                break
    except EOFError:
        pass  # the main process went away; nothing left to report to
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the main process
        where = f"env {chunk.current}" if chunk is not None else "while building its envs"
        cause = f"{where}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        try:
            conn.send(("error", cause))
        except OSError:
            pass
    finally:
        if chunk is not None:
            chunk.close()
        conn.close()


def _join_all(procs: list[mp.process.BaseProcess], timeout: float) -> None:
    """Join every process, all within one shared timeout."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))


def _mp_context() -> mp.context.BaseContext:
    # Not "fork": the main process usually runs torch/OpenMP thread pools by the time envs are
    # made, and forking a multi-threaded process can copy held locks and deadlock the child.
    # "forkserver" forks workers from a clean single-threaded server (cheap per worker);
    # "spawn" is the fallback where forkserver does not exist (macOS, Windows).
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method)


class SubprocVecEnv(_VecEnvBase):
    """``n_envs`` environments split into contiguous chunks over ``n_workers`` processes.

    Each call sends one message to every worker and receives one message of stacked arrays
    back. A worker that raises sends its traceback; a worker that dies is noticed at once
    through its process sentinel. Either raises :class:`EnvWorkerError` naming the
    environment, the worker and the cause, after which this object is closed.
    """

    def __init__(
        self,
        factory: EnvFactory,
        n_envs: int,
        base_seed: int,
        n_workers: int,
        env_name: str = "env",
        reply_timeout_s: float | None = None,
    ) -> None:
        if n_envs < 1 or n_workers < 1:
            raise ValueError(f"need n_envs >= 1 and n_workers >= 1, got {n_envs}, {n_workers}")
        self.env_name = env_name
        self.reply_timeout_s = reply_timeout_s
        self._closed = False
        self._failure: str | None = None
        ctx = _mp_context()
        chunks = [c.tolist() for c in np.array_split(np.arange(n_envs), min(n_workers, n_envs))]
        self._chunks = chunks
        self._conns: list[mp_connection.Connection] = []
        self._procs: list[mp.process.BaseProcess] = []
        for w, env_ids in enumerate(chunks):
            parent_conn, child_conn = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main,
                args=(child_conn, factory, env_ids, [base_seed + k for k in env_ids]),
                name=f"harl-env-worker-{w}",
                daemon=True,
            )
            proc.start()
            child_conn.close()  # only the worker holds it now, so its death closes the pipe
            self._conns.append(parent_conn)
            self._procs.append(proc)
        self._set_info(n_envs, self._collect("start-up")[0])

    @property
    def n_workers(self) -> int:
        """Number of worker processes."""
        return len(self._procs)

    @property
    def worker_pids(self) -> list[int | None]:
        """Process ids of the workers, in chunk order."""
        return [proc.pid for proc in self._procs]

    def reset(self) -> VecResetResult:
        """Reset all environments: obs per agent (E, d_i), share_obs (E, N, s), avail per agent."""
        parts = self._request("reset", [None] * self.n_workers)
        obs, share_obs, avail = zip(*parts)
        return self._cat_agents(obs), np.concatenate(share_obs), self._cat_agents(avail)

    def step(self, actions: list[np.ndarray]) -> StepResult:
        """Step all environments with one ``(E, a_i)`` array per agent."""
        actions = self._check_actions(actions)
        payloads = [[a[ids[0] : ids[-1] + 1] for a in actions] for ids in self._chunks]
        parts = self._request("step", payloads)
        if len(parts) == 1:
            return StepResult(*parts[0])
        obs, share_obs, rewards, dones, avail, infos = zip(*parts)
        return StepResult(
            self._cat_agents(obs),
            np.concatenate(share_obs),
            np.concatenate(rewards),
            np.concatenate(dones),
            self._cat_agents(avail),
            [info for part in infos for info in part],
        )

    def close(self) -> None:
        """Stop the workers; never hangs (join with a timeout, then kill)."""
        if self._closed:
            return
        self._closed = True
        for conn, proc in zip(self._conns, self._procs):
            if proc.is_alive():
                try:
                    conn.send(("close", None))
                except OSError:
                    pass
        _join_all(self._procs, _JOIN_TIMEOUT_S)
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()  # workers ignore SIGTERM; e.g. a stopped or hung worker
        _join_all(self._procs, _KILL_TIMEOUT_S)
        for conn in self._conns:
            conn.close()

    def __del__(self) -> None:
        # A forgotten close() must not leave worker processes behind.
        if getattr(self, "_procs", None) is not None:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - interpreter may be shutting down
                pass

    def _cat_agents(self, parts: tuple) -> list:
        return [None if parts[0][i] is None else np.concatenate([p[i] for p in parts]) for i in range(self.n_agents)]

    def _request(self, command: str, payloads: list) -> list:
        if self._closed:
            reason = f" after an earlier failure: {self._failure}" if self._failure else ""
            raise EnvWorkerError(f"the vectorised {self.env_name!r} environment is closed{reason}; create a new one")
        for w, (conn, payload) in enumerate(zip(self._conns, payloads)):
            try:
                conn.send((command, payload))
            except OSError:
                raise self._fail(w, command, self._death_cause(w)) from None
        return self._collect(command)

    def _collect(self, command: str) -> list:
        """Receive one reply per worker, failing fast if any worker errors or dies."""
        results: list[Any] = [None] * self.n_workers
        pending = set(range(self.n_workers))
        budget = self.reply_timeout_s  # seconds of silence left before a worker counts as hung
        while pending:
            # Waiting on the process sentinels too means a killed worker wakes us at once.
            wait_s = None if budget is None else min(_WAIT_SLICE_S, max(0.0, budget))
            started = time.monotonic()
            ready = mp_connection.wait(
                [self._conns[w] for w in pending] + [self._procs[w].sentinel for w in pending],
                timeout=wait_s,
            )
            if budget is not None:
                waited = time.monotonic() - started
                # a slice that overran by far was spent stopped (SIGSTOP, Ctrl-Z), not waiting
                budget -= waited if waited <= wait_s + _WAIT_SLICE_S else wait_s
                if not ready and budget <= 0:
                    raise self._fail(
                        min(pending),
                        command,
                        f"it sent no reply within env_reply_timeout={self.reply_timeout_s} s (a hung "
                        "environment?); raise --env_reply_timeout if its steps are legitimately this slow",
                    )
            if not ready:
                continue
            for w in sorted(pending):
                conn = self._conns[w]
                if conn.poll():  # read a reply first even if the worker exited right after
                    try:
                        status, payload = conn.recv()
                    except (EOFError, OSError):
                        raise self._fail(w, command, self._death_cause(w)) from None
                    if status == "error":
                        raise self._fail(w, command, f"it raised in {payload}")
                    results[w] = payload
                    pending.discard(w)
                elif not self._procs[w].is_alive():
                    raise self._fail(w, command, self._death_cause(w))
        return results

    def _death_cause(self, w: int) -> str:
        proc = self._procs[w]
        proc.join(_JOIN_TIMEOUT_S)
        code = proc.exitcode
        if code is None:
            return "its pipe closed while the process was still running"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = (
                " (SIGKILL usually means the machine ran out of memory: lower n_rollout_threads or n_env_workers)"
                if -code == signal.SIGKILL
                else ""
            )
            return f"it was killed by {name} (exit code {code}){hint}"
        return f"it exited unexpectedly with exit code {code}"

    def _fail(self, w: int, command: str, cause: str) -> EnvWorkerError:
        ids = self._chunks[w]
        self._failure = (
            f"environment worker {w} of {self.env_name!r} (envs {ids[0]}..{ids[-1]}) failed during {command}: {cause}"
        )
        self.close()
        return EnvWorkerError(self._failure)
