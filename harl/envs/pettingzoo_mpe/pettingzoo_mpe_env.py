"""Multi-Agent Particle Environments through the ``mpe2`` package (PettingZoo parallel API)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import mpe2  # noqa: F401  - fails early (EnvNotInstalledError) when the package is missing
import numpy as np
from gymnasium import spaces

from harl.envs import check_env_args
from harl.envs.base import EnvStepResult, MultiAgentEnv, ResetResult
from harl.envs.coverage import coverage_metric_names, coverage_metrics

logger = logging.getLogger(__name__)

# Scenario name accepted in env_args -> mpe2 module. HARL's names (PettingZoo's older MPE
# versions) map onto the mpe2 versions of the same scenarios.
SCENARIOS: dict[str, str] = {
    "simple_spread_v3": "simple_spread_v3",
    "simple_reference_v3": "simple_reference_v3",
    "simple_speaker_listener_v4": "simple_speaker_listener_v4",
    "simple_spread_v2": "simple_spread_v3",
    "simple_reference_v2": "simple_reference_v3",
    "simple_speaker_listener_v3": "simple_speaker_listener_v4",
}
# Scenarios of this project built on mpe2's scenario code -> module.
OWN_SCENARIOS: dict[str, str] = {"landmark_coverage": "harl.envs.pettingzoo_mpe.landmark_coverage"}

_logged_mappings: set[str] = set()


class PettingZooMPEEnv(MultiAgentEnv):
    """One MPE scenario: per-agent observations, the environment state as every agent's
    shared observation (EP), and the sum of the agents' rewards as every agent's reward (the
    team reward HARL trains on).

    Discrete actions have every action available. Continuous actions are ``Box(0, 1)``; the
    policy's raw actions are clipped into it. Episodes end by truncation after ``max_cycles``
    steps, so the last step of every episode is a ``bad_transition``. Observation sizes and
    action spaces may differ between agents (speaker/listener); nothing is padded.
    """

    def __init__(self, env_args: dict[str, Any]) -> None:
        args = check_env_args("pettingzoo_mpe", env_args)
        self.scenario: str = args["scenario"]
        self.discrete = not args["continuous_actions"]
        if self.scenario in OWN_SCENARIOS:
            module = importlib.import_module(OWN_SCENARIOS[self.scenario])
            self.episode_metric_names = coverage_metric_names(module.N_LANDMARKS, "landmark")
            self._held_landmarks = module.held_landmarks
            self._held: np.ndarray | None = np.zeros(module.N_LANDMARKS)  # steps each landmark was held
            self.hold_radius: float = module.HOLD_RADIUS
        else:
            module = importlib.import_module(f"mpe2.{SCENARIOS[self.scenario]}")
            self._held_landmarks = self._held = None
        self._t = 0
        # The scenario's unwrapped AEC env, stepped agent by agent, gives exactly what
        # parallel_env gives (tests/test_envs.py checks this) at about twice the speed: the
        # parallel and order-enforcing wrappers compute every observation two more times per step.
        self._env = module.raw_env(continuous_actions=not self.discrete, max_cycles=args["max_cycles"])
        self._agents = list(self._env.possible_agents)
        self.n_agents = len(self._agents)
        self.episode_limit = int(args["max_cycles"])
        self.observation_spaces = [self._env.observation_space(a) for a in self._agents]
        self.action_spaces = [self._env.action_space(a) for a in self._agents]
        self.share_observation_spaces = [
            spaces.Box(-np.inf, np.inf, self._env.state_space.shape, dtype=np.float32) for _ in self._agents
        ]
        self._avail: list[np.ndarray | None] = [
            np.ones(space.n, dtype=np.float32) if self.discrete else None for space in self.action_spaces
        ]

    @staticmethod
    def check_args(args: dict[str, Any]) -> None:
        """Raise ``ValueError`` for unsupported values; log HARL-name mappings once."""
        scenario = args["scenario"]
        if scenario not in SCENARIOS and scenario not in OWN_SCENARIOS:
            raise ValueError(
                f"pettingzoo_mpe: unsupported scenario {scenario!r}; supported: "
                f"{', '.join([*SCENARIOS, *OWN_SCENARIOS])}"
            )
        if scenario in SCENARIOS and SCENARIOS[scenario] != scenario and scenario not in _logged_mappings:
            _logged_mappings.add(scenario)
            logger.info(
                "pettingzoo_mpe: scenario %s runs as mpe2's %s (same scenario, current version)",
                scenario,
                SCENARIOS[scenario],
            )
        if not isinstance(args["max_cycles"], int) or args["max_cycles"] < 1:
            raise ValueError(f"pettingzoo_mpe: max_cycles must be a positive integer, got {args['max_cycles']!r}")
        if args["state_type"] != "EP":
            raise ValueError(
                f"pettingzoo_mpe: state_type {args['state_type']!r} is not supported; MPE has "
                "one global state, use state_type: EP"
            )

    def reset(self, seed: int | None = None) -> ResetResult:
        """Start an episode; ``seed=None`` continues the scenario's random stream."""
        self._env.reset(seed=seed)
        if self._held is not None:
            self._held[:] = 0
        self._t = 0
        return self._observe() + (self._avail,)

    def step(self, actions: list[np.ndarray]) -> EnvStepResult:
        """Apply one action per agent (clipped into ``Box(0, 1)`` when continuous)."""
        for action, space in zip(actions, self.action_spaces):
            if self.discrete:
                self._env.step(int(np.asarray(action).reshape(-1)[0]))
            else:
                self._env.step(np.clip(np.asarray(action, dtype=np.float32), space.low, space.high))
        terminated = any(self._env.terminations[a] for a in self._agents)
        truncated = any(self._env.truncations[a] for a in self._agents)
        done = terminated or truncated
        info: dict[str, Any] = {"bad_transition": truncated and not terminated}
        self._t += 1
        if self._held is not None:
            self._held += self._held_landmarks(self._env.world)
        if done:
            info["episode_metrics"] = {} if self._held is None else coverage_metrics(self._held, self._t, "landmark")
        team_reward = sum(self._env.rewards[a] for a in self._agents)
        rewards = np.full(self.n_agents, team_reward, dtype=np.float32)
        dones = np.full(self.n_agents, done, dtype=bool)
        obs, share_obs = self._observe()
        return obs, share_obs, rewards, dones, info, self._avail

    @property
    def positions(self) -> np.ndarray:
        """``(N, 2)`` the agents' current positions (visitation-density plots)."""
        return np.stack([agent.state.p_pos for agent in self._env.world.agents]).astype(np.float32)

    @property
    def target_places(self) -> np.ndarray:
        """``(K, 2)`` the landmarks' positions (fixed in the coverage scenario)."""
        return np.stack([landmark.state.p_pos for landmark in self._env.world.landmarks]).astype(np.float32)

    def close(self) -> None:
        """Close the PettingZoo environment."""
        self._env.close()

    def _observe(self) -> tuple[list[np.ndarray], np.ndarray]:
        obs = [np.asarray(self._env.observe(a), dtype=np.float32) for a in self._agents]
        # mpe2's state() is the concatenation of the agents' observations; reuse them.
        state = np.concatenate(obs)
        return obs, np.tile(state, (self.n_agents, 1))
