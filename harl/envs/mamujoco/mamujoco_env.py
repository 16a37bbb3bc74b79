"""Multi-Agent MuJoCo through ``gymnasium_robotics.mamujoco_v1`` (MuJoCo v5 models).

HARL's scenario names (``HalfCheetah-v2``) are accepted and run on the v5 model of the same
robot, because the v2 models need ``mujoco-py``, which cannot be installed here.
"""

from __future__ import annotations

import logging
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium_robotics import mamujoco_v1
from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges

from harl.envs import check_env_args
from harl.envs.base import EnvStepResult, MultiAgentEnv, ResetResult

logger = logging.getLogger(__name__)

# Factorisations (agent_conf) the package builds itself, per v5 scenario.
_BUILT_IN: dict[str, tuple[str, ...]] = {
    "Ant": ("2x4", "2x4d", "4x2"),
    "HalfCheetah": ("2x3", "6x1"),
    "Hopper": ("3x1",),
    "Walker2d": ("2x3",),
    "Humanoid": ("9|8",),
    "HumanoidStandup": ("9|8",),
}
# Factorisations the package lacks, built from its whole-robot joint graph and passed as
# agent_factorization: None = one joint per agent, ordered by actuator index; otherwise
# groups of joint labels, each group a chain of neighbouring joints.
_CUSTOM: dict[str, dict[str, tuple[tuple[str, ...], ...] | None]] = {
    "Ant": {"8x1": None},
    "HalfCheetah": {"3x2": (("bfoot", "bshin"), ("bthigh", "fthigh"), ("fshin", "ffoot"))},
    "Walker2d": {"6x1": None},
    "Humanoid": {"17x1": None},
    "HumanoidStandup": {"17x1": None},
}
# HARL's names (MuJoCo v2 models) -> v5 scenario of the same robot.
_HARL_NAMES: dict[str, str] = {f"{name}-v2": name for name in _BUILT_IN}
# Values of the obs_mode env key.
_OBS_MODES = ("local", "harl_state")

_logged_mappings: set[str] = set()
_seen_mujoco_warnings: set[str] = set()


def _log_mujoco_warning(message: str) -> None:
    # Each distinct MuJoCo warning once per process (model compilation repeats them per env).
    if message not in _seen_mujoco_warnings:
        _seen_mujoco_warnings.add(message)
        logger.warning("MuJoCo: %s", message)


def supported_agent_confs(scenario: str) -> tuple[str, ...]:
    """The agent_conf values available for a v5 scenario name."""
    return _BUILT_IN.get(scenario, ()) + tuple(_CUSTOM.get(scenario, {}))


def _v5_scenario(scenario: str) -> str:
    return _HARL_NAMES.get(scenario, scenario)


def _custom_factorization(scenario: str, agent_conf: str) -> dict[str, Any]:
    (whole_robot,), edges, global_nodes = get_parts_and_edges(scenario, None)
    groups = _CUSTOM[scenario][agent_conf]
    if groups is None:
        partition = [(node,) for node in sorted(whole_robot, key=lambda node: node.act_ids)]
    else:
        by_label = {node.label: node for node in whole_robot}
        partition = [tuple(by_label[label] for label in group) for group in groups]
    return {"partition": partition, "edges": edges, "globals": global_nodes}


def _standardise(x: np.ndarray) -> np.ndarray:
    # HARL standardises each observation vector by its own mean and std; the epsilon only
    # guards the degenerate all-equal vector.
    return (x - x.mean()) / (x.std() + 1e-8)


class MAMuJoCoEnv(MultiAgentEnv):
    """A MuJoCo robot whose joints are split among agents (``agent_conf``).

    Observations (``obs_mode``): ``local`` is the package's per-agent observation of its own
    joints and those within ``agent_obsk`` hops; ``harl_state`` is HARL's MuJoCo observation,
    the full state plus the agent's one-hot id, standardised per vector. The shared
    observation is the full state (EP). Actions are ``Box(-1, 1)`` per agent: the policy's raw
    action is clipped to [-1, 1] and mapped linearly onto the actuators' range, as HARL does
    (this only changes Humanoid, whose actuators span [-0.4, 0.4]). Termination (the robot
    fell) and truncation (``episode_limit`` reached) are told apart by ``bad_transition``.
    """

    def __init__(self, env_args: dict[str, Any]) -> None:
        args = check_env_args("mamujoco", env_args)
        if mujoco.get_mju_user_warning() is None:
            # MuJoCo's default handler appends to MUJOCO_LOG.TXT in the working directory.
            mujoco.set_mju_user_warning(_log_mujoco_warning)
        self.scenario: str = args["scenario"]
        self.agent_conf: str = args["agent_conf"]
        self.obs_mode: str = args["obs_mode"]
        v5_scenario = _v5_scenario(self.scenario)
        extra: dict[str, Any] = {}
        if self.agent_conf in _CUSTOM.get(v5_scenario, {}):
            extra["agent_factorization"] = _custom_factorization(v5_scenario, self.agent_conf)
        self._env = mamujoco_v1.parallel_env(
            v5_scenario,
            self.agent_conf,
            agent_obsk=args["agent_obsk"],
            max_episode_steps=args["episode_limit"],
            **extra,
        )
        self._agents = list(self._env.possible_agents)
        self.n_agents = len(self._agents)
        self.episode_limit = int(args["episode_limit"])
        native = [self._env.action_space(a) for a in self._agents]
        self._act_low = [np.asarray(s.low, dtype=np.float64) for s in native]
        self._act_span = [np.asarray(s.high - s.low, dtype=np.float64) for s in native]
        self.action_spaces = [spaces.Box(-1.0, 1.0, s.shape, dtype=np.float32) for s in native]
        state_size = self._env.state().shape[0]
        if self.obs_mode == "harl_state":
            obs_sizes = [state_size + self.n_agents] * self.n_agents
        else:
            obs_sizes = [self._env.observation_space(a).shape[0] for a in self._agents]
        self.observation_spaces = [spaces.Box(-np.inf, np.inf, (d,), dtype=np.float32) for d in obs_sizes]
        self.share_observation_spaces = [
            spaces.Box(-np.inf, np.inf, (state_size,), dtype=np.float32) for _ in self._agents
        ]
        self._avail: list[np.ndarray | None] = [None] * self.n_agents

    @staticmethod
    def check_args(args: dict[str, Any]) -> None:
        """Raise ``ValueError`` for unsupported values; log the v2 -> v5 mapping once."""
        scenario = args["scenario"]
        v5_scenario = _v5_scenario(scenario)
        if v5_scenario not in _BUILT_IN:
            names = sorted(_BUILT_IN) + sorted(_HARL_NAMES)
            raise ValueError(f"mamujoco: unsupported scenario {scenario!r}; supported: {', '.join(names)}")
        confs = supported_agent_confs(v5_scenario)
        if args["agent_conf"] not in confs:
            raise ValueError(
                f"mamujoco: unsupported agent_conf {args['agent_conf']!r} for {scenario}; supported: {', '.join(confs)}"
            )
        if not isinstance(args["agent_obsk"], int) or args["agent_obsk"] < 0:
            raise ValueError(f"mamujoco: agent_obsk must be an integer >= 0, got {args['agent_obsk']!r}")
        if not isinstance(args["episode_limit"], int) or args["episode_limit"] < 1:
            raise ValueError(f"mamujoco: episode_limit must be a positive integer, got {args['episode_limit']!r}")
        if args["obs_mode"] not in _OBS_MODES:
            raise ValueError(f"mamujoco: obs_mode must be one of {_OBS_MODES}, got {args['obs_mode']!r}")
        if args["state_type"] != "EP":
            raise ValueError(f"mamujoco: state_type {args['state_type']!r} is not supported; use state_type: EP")
        if scenario != v5_scenario and scenario not in _logged_mappings:
            _logged_mappings.add(scenario)
            logger.info(
                "mamujoco: %s runs on the MuJoCo v5 model %s-v5 (mujoco-py, needed by v2, "
                "cannot be installed); returns are comparable in scale but not identical",
                scenario,
                v5_scenario,
            )

    def reset(self, seed: int | None = None) -> ResetResult:
        """Start an episode; ``seed=None`` continues the simulator's random stream."""
        obs, _ = self._env.reset(seed=seed)
        return (*self._observe(obs), self._avail)

    def step(self, actions: list[np.ndarray]) -> EnvStepResult:
        """Apply one action per agent, clipped to [-1, 1] and mapped onto the actuator range."""
        act = {
            agent: low + (np.clip(np.asarray(u, dtype=np.float64), -1.0, 1.0) + 1.0) * 0.5 * span
            for agent, u, low, span in zip(self._agents, actions, self._act_low, self._act_span)
        }
        obs, rew, term, trunc, _ = self._env.step(act)
        first = self._agents[0]
        terminated, truncated = bool(term[first]), bool(trunc[first])
        info: dict[str, Any] = {"bad_transition": truncated and not terminated}
        if terminated or truncated:
            info["episode_metrics"] = {}
        rewards = np.full(self.n_agents, rew[first], dtype=np.float32)
        dones = np.full(self.n_agents, terminated or truncated, dtype=bool)
        return (*self._observe(obs), rewards, dones, info, self._avail)

    def close(self) -> None:
        """Close the simulator."""
        self._env.close()

    def _observe(self, obs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        state = np.asarray(self._env.state(), dtype=np.float64)
        if self.obs_mode == "harl_state":
            ids = np.eye(self.n_agents)
            agent_obs = [_standardise(np.concatenate([state, ids[i]])).astype(np.float32) for i in range(self.n_agents)]
            state = _standardise(state)
        else:
            agent_obs = [np.asarray(obs[a], dtype=np.float32) for a in self._agents]
        return agent_obs, np.tile(state.astype(np.float32), (self.n_agents, 1))
