"""Bi-DexterousHands (``--env dexhands``): two Shadow Hands in NVIDIA Isaac Gym, through the
benchmark's multi-agent vectorised task (``bidexhands``' ``MultiVecTaskPython``).

Isaac Gym simulates every environment of a run in one GPU call, so this adapter is a batched
vector env (:meth:`DexHandsEnv.make_batched_vec_env`): one ``task.step`` per vector step for all
``n_rollout_threads`` environments, never a loop over environments. Observations and states stay
torch tensors on the simulator's device (``observation_device``): the runners' buffers keep them
there and the networks read them there, with no round trip through host memory; only the
rewards and episode ends, a few numbers per environment, are copied to the host for the
bookkeeping, and the actions come from the host. What an agent sees and does is the benchmark's:
per hand its observation, the
global state for every agent, continuous actions in [-1, 1], the team reward. Isaac Gym resets
a finished environment at the start of its next step (the task's ``reset_buf``), so the
observation returned when an episode ends is its last one; the vector reports it as the final
observation and the next step starts the new episode. An episode that lasts
``hands_episode_length`` steps is a truncation (``bad_transition``).

Isaac Gym and the benchmark are not on PyPI and need an NVIDIA GPU: :meth:`DexHandsEnv.check_args`
finds out what is missing without importing anything and says where to get it; when both are
there it imports Isaac Gym at once, because Isaac Gym refuses to load after torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import numpy as np
from gymnasium import spaces

from harl.envs.base import EnvNotInstalledError, EnvStepResult, MultiAgentEnv, ResetResult, StepResult

TASKS: tuple[str, ...] = (
    "ShadowHandOver",
    "ShadowHandCatchUnderarm",
    "ShadowHandCatchOver2Underarm",
    "ShadowHandCatchAbreast",
    "ShadowHandTwoCatchUnderarm",
    "ShadowHandLiftUnderarm",
    "ShadowHandPen",
    "ShadowHandDoorOpenInward",
    "ShadowHandDoorOpenOutward",
    "ShadowHandDoorCloseInward",
)
"""The two-hand tasks HARL publishes settings for (and ShadowHandCatchUnderarm)."""

_REQUIREMENTS = (
    (
        "isaacgym",
        "NVIDIA Isaac Gym Preview 4 (download it from https://developer.nvidia.com/isaac-gym, "
        "then: pip install -e isaacgym/python; it needs an NVIDIA GPU and driver)",
    ),
    (
        "bidexhands",
        "the Bi-DexterousHands benchmark (git clone https://github.com/PKU-MARL/DexterousHands, "
        "then: pip install -e DexterousHands)",
    ),
)


def missing_requirements() -> list[str]:
    """What ``--env dexhands`` lacks, one phrase each; looks for the packages without importing them."""
    return [what for module, what in _REQUIREMENTS if importlib.util.find_spec(module) is None]


def load_isaacgym() -> None:
    """Import Isaac Gym; it must come before torch, or it refuses to load."""
    importlib.import_module("isaacgym")


def build_task(task: str, n_envs: int, episode_length: int, seed: int) -> Any:
    """The benchmark's multi-agent vectorised task (``MultiVecTaskPython``) with ``n_envs``
    environments, built as the benchmark's own ``train.py`` builds it, headless."""
    config = importlib.import_module("bidexhands.utils.config")
    parse_task = importlib.import_module("bidexhands.utils.parse_task").parse_task
    get_agent_index = importlib.import_module("bidexhands.utils.process_marl").get_AgentIndex
    argv = sys.argv
    # the benchmark reads its settings from the command line
    sys.argv = ["harl", f"--task={task}", "--algo=happo", f"--num_envs={n_envs}", f"--seed={seed}", "--headless"]
    try:
        args = config.get_args()
    finally:
        sys.argv = argv
    cfg, cfg_train, _ = config.load_cfg(args)
    cfg["env"]["numEnvs"] = n_envs
    cfg["env"]["episodeLength"] = episode_length
    sim_params = config.parse_sim_params(args, cfg, cfg_train)
    args.task_type = "MultiAgent"
    return parse_task(args, cfg, cfg_train, sim_params, get_agent_index(cfg))


class DexHandsVecEnv:
    """``n_envs`` Bi-DexterousHands environments stepped by one Isaac Gym call, with the
    vectorised-environment API of ``docs/ARCHITECTURE.md``."""

    episode_metric_names: tuple[str, ...] = ()

    def __init__(self, env_args: dict[str, Any], n_envs: int, base_seed: int) -> None:
        import torch

        self._torch = torch
        self._task = build_task(env_args["task"], n_envs, env_args["hands_episode_length"], base_seed)
        self.n_envs = int(self._task.num_envs)
        self.n_agents = int(self._task.num_agents)
        self.episode_limit = int(env_args["hands_episode_length"])
        self.observation_spaces = [
            spaces.Box(-np.inf, np.inf, (s.shape[0],), np.float32) for s in self._task.observation_space
        ]
        self.share_observation_spaces = [
            spaces.Box(-np.inf, np.inf, (s.shape[0],), np.float32) for s in self._task.share_observation_space
        ]
        self.action_spaces = [spaces.Box(-1.0, 1.0, (s.shape[0],), np.float32) for s in self._task.action_space]
        self._device = getattr(self._task, "rl_device", "cpu")
        self.observation_device = torch.device(self._device)
        self._steps = np.zeros(self.n_envs, dtype=np.int64)
        self._avail: list[None] = [None] * self.n_agents

    def _host(self, x: Any) -> np.ndarray:
        # one copy of the whole batch per quantity
        return x.detach().to("cpu", copy=True).numpy().astype(np.float32, copy=False)

    def _observations(self, x: Any) -> Any:
        # the task's fresh tensors, where they are (float32 already: no copy)
        return x.detach().to(dtype=self._torch.float32)

    def reset(self) -> tuple[list[Any], Any, list[None]]:
        """Every environment's first observation, tensors on ``observation_device``: obs per agent
        ``(E, d_i)``, share_obs ``(E, N, s)``."""
        obs, share_obs, _ = self._task.reset()
        self._steps[:] = 0
        obs = self._observations(obs)
        return [obs[:, i] for i in range(self.n_agents)], self._observations(share_obs), self._avail

    def step(self, actions: list[np.ndarray]) -> StepResult:
        """Step every environment with one ``(E, a_i)`` action array per agent; observations as
        in :meth:`reset`, rewards and dones as numpy arrays."""
        if len(actions) != self.n_agents:
            raise ValueError(f"step() got actions for {len(actions)} agents but the task has {self.n_agents}")
        torch = self._torch
        # the task concatenates the hands' actions itself; a list lets their sizes differ
        per_agent = [torch.as_tensor(np.clip(a, -1.0, 1.0), dtype=torch.float32, device=self._device) for a in actions]
        obs, share_obs, rewards, dones, _, _ = self._task.step(per_agent)  # (E, N, d), (E, N, s), (E, N, 1), (E, N)
        obs, share_obs = self._observations(obs), self._observations(share_obs)
        rewards = self._host(rewards).reshape(self.n_envs, self.n_agents)
        dones = self._host(dones).reshape(self.n_envs, self.n_agents) > 0
        self._steps += 1
        ended = dones.any(axis=1)
        truncated = ended & (self._steps >= self.episode_limit)
        infos: list[dict[str, Any]] = [
            {"bad_transition": bool(t), "episode_done": bool(e)} for t, e in zip(truncated, ended)
        ]
        for e in np.flatnonzero(ended):
            infos[e].update(
                final_obs=list(obs[e]),
                final_share_obs=share_obs[e],
                final_available_actions=self._avail,
                episode_metrics={},
            )
        self._steps[ended] = 0
        dones = np.repeat(ended[:, None], self.n_agents, axis=1)
        return StepResult([obs[:, i] for i in range(self.n_agents)], share_obs, rewards, dones, self._avail, infos)

    def close(self) -> None:
        """Isaac Gym keeps its simulation until the process ends; nothing to release here."""


class DexHandsEnv(MultiAgentEnv):
    """The registry's entry for ``--env dexhands``: its settings check and its batched vector.
    Bi-DexterousHands has no single-environment form (Isaac Gym simulates them all at once)."""

    @staticmethod
    def check_args(args: dict[str, Any]) -> None:
        """Raise ``ValueError`` for an unknown task or a bad episode length, then
        ``EnvNotInstalledError`` naming what is missing; import Isaac Gym when it is there."""
        if args["task"] not in TASKS:
            raise ValueError(f"dexhands: unknown task {args['task']!r}; valid: {', '.join(TASKS)}")
        length = args["hands_episode_length"]
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ValueError(f"dexhands: hands_episode_length must be a positive integer, got {length!r}")
        missing = missing_requirements()
        if missing:
            raise EnvNotInstalledError(
                f"dexhands cannot run {args['task']}: it needs {'; and '.join(missing)}. "
                f"{'Neither is' if len(missing) > 1 else 'It is not'} on PyPI, and Isaac Gym runs only "
                "on Linux with an NVIDIA GPU; the environments that run "
                "without them are listed by: python examples/train.py --help."
            )
        load_isaacgym()

    @classmethod
    def make_batched_vec_env(cls, env_args: dict[str, Any], n_envs: int, base_seed: int) -> DexHandsVecEnv:
        return DexHandsVecEnv(env_args, n_envs, base_seed)

    def __init__(self, env_args: dict[str, Any]) -> None:
        raise TypeError("Bi-DexterousHands has no single-environment form; build it with harl.envs.make_train_env")

    def reset(self, seed: int | None = None) -> ResetResult:
        raise TypeError("Bi-DexterousHands has no single-environment form")

    def step(self, actions: list[np.ndarray]) -> EnvStepResult:
        raise TypeError("Bi-DexterousHands has no single-environment form")
