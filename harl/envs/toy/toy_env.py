"""A tiny cue-matching game with heterogeneous agents, for tests; needs no extra package.

Every step each discrete agent sees a one-hot cue and earns a share of the team reward when it
picks the cued action. Some of the other actions are unavailable, a different random subset
each step; executing one raises ``ValueError``, so a run that finishes proves the action masks
were respected. The optional continuous agent earns its share by moving its action close to a
target vector shown in its observation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from harl.envs import check_env_args
from harl.envs.base import EnvStepResult, MultiAgentEnv, ResetResult, check_state_type

# Action counts of the discrete agents: different on purpose, so agents have different spaces.
_DISCRETE_ACTIONS = (3, 5)
# Agent 1 also sees this many noise features, so observation sizes differ beyond the cue size.
_NOISE_FEATURES = 2
# Dimension of the optional continuous agent's Box action (and of its target).
_BOX_DIM = 2
# Probability that a non-cued action is available in a given step.
_P_AVAILABLE = 0.6


class ToyEnv(MultiAgentEnv):
    """Cue-matching game: agents with different observation sizes and action spaces.

    Agent 0: ``Discrete(3)``, observes cue (3) + time fraction = 4 features.
    Agent 1: ``Discrete(5)``, observes cue (5) + time fraction + 2 noise features = 8.
    Agent 2 (``continuous_agent: true`` only): ``Box(-1, 1, (2,))``, observes target (2) + time
    fraction = 3. The team reward is the mean over agents of 1 for a matched cue (0 otherwise)
    and, for the continuous agent, ``1 - mean|action - target|``.
    """

    episode_metric_names = ("success_rate",)

    def __init__(self, env_args: dict[str, Any]) -> None:
        args = check_env_args("toy", env_args)
        self.episode_limit: int = args["episode_limit"]
        self.terminate_on_miss: bool = args["terminate_on_miss"]
        self.state_type: str = args["state_type"]
        self.continuous_agent: bool = args["continuous_agent"]
        self.n_agents = len(_DISCRETE_ACTIONS) + int(self.continuous_agent)

        obs_sizes = [n + 1 for n in _DISCRETE_ACTIONS]
        obs_sizes[1] += _NOISE_FEATURES
        self.action_spaces = [spaces.Discrete(n) for n in _DISCRETE_ACTIONS]
        if self.continuous_agent:
            obs_sizes.append(_BOX_DIM + 1)
            self.action_spaces.append(spaces.Box(-1.0, 1.0, (_BOX_DIM,), dtype=np.float32))
        self.observation_spaces = [spaces.Box(-np.inf, np.inf, (d,), dtype=np.float32) for d in obs_sizes]
        # FP gives each agent the state plus its own one-hot id, as HARL's FP states do.
        share_size = sum(obs_sizes) + (self.n_agents if self.state_type == "FP" else 0)
        self.share_observation_spaces = [
            spaces.Box(-np.inf, np.inf, (share_size,), dtype=np.float32) for _ in range(self.n_agents)
        ]
        self._rng = np.random.default_rng()
        self._t = 0
        self._successes = 0

    @staticmethod
    def check_args(args: dict[str, Any]) -> None:
        """Raise ``ValueError`` for unsupported values."""
        if not isinstance(args["episode_limit"], int) or args["episode_limit"] < 1:
            raise ValueError(f"toy: episode_limit must be a positive integer, got {args['episode_limit']!r}")
        check_state_type(args["state_type"], "toy: state_type")

    def reset(self, seed: int | None = None) -> ResetResult:
        """Start an episode; a seed re-creates the random generator."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        self._successes = 0
        self._draw()
        return self._observe()

    def step(self, actions: list[np.ndarray]) -> EnvStepResult:
        """Score the actions against the current cues, then draw new cues."""
        scores = []
        for i, n in enumerate(_DISCRETE_ACTIONS):
            action = int(np.asarray(actions[i]).reshape(-1)[0])
            if not 0 <= action < n or self._avail[i][action] == 0:
                raise ValueError(
                    f"toy env: agent {i} executed action {action}, which is not available "
                    f"(available: {np.flatnonzero(self._avail[i]).tolist()}); the policy must "
                    "respect available_actions"
                )
            scores.append(float(action == self._cues[i]))
        hit_all = all(scores)
        if self.continuous_agent:
            action = np.clip(np.asarray(actions[-1], dtype=np.float32), -1.0, 1.0)
            scores.append(1.0 - float(np.mean(np.abs(action - self._target))))
        self._t += 1
        self._successes += int(hit_all)

        terminated = self.terminate_on_miss and not hit_all
        truncated = self._t >= self.episode_limit and not terminated
        info: dict[str, Any] = {"bad_transition": truncated}
        if terminated or truncated:
            info["episode_metrics"] = {"success_rate": self._successes / self._t}
        self._draw()
        obs, share_obs, avail = self._observe()
        rewards = np.full(self.n_agents, np.mean(scores), dtype=np.float32)
        dones = np.full(self.n_agents, terminated or truncated, dtype=bool)
        return obs, share_obs, rewards, dones, info, avail

    def _draw(self) -> None:
        self._cues = [int(self._rng.integers(n)) for n in _DISCRETE_ACTIONS]
        self._avail = []
        for cue, n in zip(self._cues, _DISCRETE_ACTIONS):
            mask = (self._rng.random(n) < _P_AVAILABLE).astype(np.float32)
            mask[cue] = 1.0
            # Always mask at least one action so tests can tell whether masks are respected.
            others = [a for a in range(n) if a != cue]
            mask[others[int(self._rng.integers(len(others)))]] = 0.0
            self._avail.append(mask)
        self._noise = self._rng.standard_normal(_NOISE_FEATURES).astype(np.float32)
        self._target = self._rng.uniform(-0.5, 0.5, _BOX_DIM).astype(np.float32)

    def _observe(self) -> ResetResult:
        time_frac = np.array([self._t / self.episode_limit], dtype=np.float32)
        obs = []
        for cue, n in zip(self._cues, _DISCRETE_ACTIONS):
            obs.append(np.concatenate([np.eye(n, dtype=np.float32)[cue], time_frac]))
        obs[1] = np.concatenate([obs[1], self._noise])
        if self.continuous_agent:
            obs.append(np.concatenate([self._target, time_frac]))
        state = np.concatenate(obs)
        if self.state_type == "FP":
            share_obs = np.concatenate(
                [np.tile(state, (self.n_agents, 1)), np.eye(self.n_agents, dtype=np.float32)],
                axis=1,
            )
        else:
            share_obs = np.tile(state, (self.n_agents, 1))
        avail: list[np.ndarray | None] = [m.copy() for m in self._avail]
        if self.continuous_agent:
            avail.append(None)
        return obs, share_obs, avail
