"""The occupation game of the paper's Figs. 1 and 2: agents spread over K target regions.

``n_agents`` point agents start together at the centre of a square arena (``[-1, 1]^2``) and
move by velocity actions. ``n_targets`` circular target regions of radius ``target_radius`` sit
evenly on a circle of radius ``target_distance`` around the centre. Each step the team earns the
share of targets occupied (at least one agent inside), so the best joint behaviour covers every
target; with the agents starting at one point, every assignment of agents to targets is equally
good, which makes the objective multimodal: a policy that keeps one mode (one target, or one
assignment) covers less than one that keeps them all.

Per-episode metrics: ``coverage`` (share of targets occupied, averaged over the episode's
steps), ``balance`` (entropy of the occupied time across targets over its maximum, ``log K``:
1 when every target was held equally long, 0 when one target or none was held) and
``target_<k>`` (share of steps target ``k`` was held), whose means over episodes are the
visitation distribution over targets plotted over training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from harl.envs import check_env_args
from harl.envs.base import EnvStepResult, MultiAgentEnv, ResetResult, check_state_type
from harl.envs.coverage import coverage_metric_names, coverage_metrics, occupancy

# Agents start within this distance of the centre (uniform in a square), so the start is
# symmetric up to a small perturbation.
_START_JITTER = 0.05


def target_positions(n_targets: int, distance: float) -> np.ndarray:
    """``(K, 2)`` centres of ``n_targets`` regions evenly on a circle, the first at 45 degrees
    (four targets sit on the diagonals, as in Fig. 1)."""
    angles = np.pi / 4 + 2 * np.pi * np.arange(n_targets) / n_targets
    return (distance * np.stack([np.cos(angles), np.sin(angles)], axis=1)).astype(np.float32)


class OccupationEnv(MultiAgentEnv):
    """Occupation game (module doc): ``Box(-1, 1, (2,))`` velocity actions, scaled by ``max_speed``.

    Observation of agent ``i`` (``2 + 2K + 2(N - 1) + 1`` floats): its position, the offsets
    to every target's centre, the offsets to the other agents (in agent order) and the elapsed
    share of the episode. The shared state (EP) is every agent's position, the targets' centres
    and the elapsed share; FP appends the agent's observation and one-hot id.
    """

    def __init__(self, env_args: dict[str, Any]) -> None:
        args = check_env_args("occupation", env_args)
        self.n_agents = int(args["n_agents"])
        self.n_targets = int(args["n_targets"])
        self.episode_limit = int(args["episode_limit"])
        self.hold_radius = float(args["target_radius"])
        self.max_speed = float(args["max_speed"])
        self.state_type: str = args["state_type"]
        self.targets = target_positions(self.n_targets, float(args["target_distance"]))
        self.episode_metric_names = coverage_metric_names(self.n_targets, "target")

        obs_size = 2 + 2 * self.n_targets + 2 * (self.n_agents - 1) + 1
        state_size = 2 * self.n_agents + 2 * self.n_targets + 1
        share_size = state_size + (obs_size + self.n_agents if self.state_type == "FP" else 0)
        self.observation_spaces = [spaces.Box(-np.inf, np.inf, (obs_size,), np.float32)] * self.n_agents
        self.share_observation_spaces = [spaces.Box(-np.inf, np.inf, (share_size,), np.float32)] * self.n_agents
        self.action_spaces = [spaces.Box(-1.0, 1.0, (2,), np.float32)] * self.n_agents
        self._rng = np.random.default_rng()
        self._positions = np.zeros((self.n_agents, 2), np.float32)
        self._held = np.zeros(self.n_targets, np.float64)
        self._t = 0

    @staticmethod
    def check_args(args: dict[str, Any]) -> None:
        """Raise ``ValueError`` for unsupported values."""
        for key in ("n_agents", "n_targets", "episode_limit"):
            if not isinstance(args[key], int) or isinstance(args[key], bool) or args[key] < 1:
                raise ValueError(f"occupation: {key} must be a positive integer, got {args[key]!r}")
        for key in ("target_radius", "target_distance", "max_speed"):
            if not isinstance(args[key], (int, float)) or isinstance(args[key], bool) or not args[key] > 0:
                raise ValueError(f"occupation: {key} must be a positive number, got {args[key]!r}")
        if args["target_distance"] + args["target_radius"] > 1.0:
            raise ValueError(
                f"occupation: target_distance + target_radius ({args['target_distance']} + "
                f"{args['target_radius']}) must be at most 1 so that every target lies in the arena [-1, 1]^2"
            )
        check_state_type(args["state_type"], "occupation: state_type")

    def reset(self, seed: int | None = None) -> ResetResult:
        """Start an episode with the agents at the centre; a seed re-creates the random generator."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._positions = self._rng.uniform(-_START_JITTER, _START_JITTER, (self.n_agents, 2)).astype(np.float32)
        self._held = np.zeros(self.n_targets, np.float64)
        self._t = 0
        return self._observe()

    def step(self, actions: list[np.ndarray]) -> EnvStepResult:
        """Move every agent, then score the share of targets occupied."""
        velocity = np.clip(np.stack([np.asarray(a, np.float32).reshape(2) for a in actions]), -1.0, 1.0)
        self._positions = np.clip(self._positions + self.max_speed * velocity, -1.0, 1.0).astype(np.float32)
        held = occupancy(self._positions, self.targets, self.hold_radius)
        self._held += held
        self._t += 1
        truncated = self._t >= self.episode_limit
        info: dict[str, Any] = {"bad_transition": truncated}
        if truncated:
            info["episode_metrics"] = coverage_metrics(self._held, self._t, "target")
        obs, share_obs, avail = self._observe()
        rewards = np.full(self.n_agents, held.mean(), dtype=np.float32)
        dones = np.full(self.n_agents, truncated, dtype=bool)
        return obs, share_obs, rewards, dones, info, avail

    @property
    def positions(self) -> np.ndarray:
        """``(N, 2)`` current positions (for visitation-density plots)."""
        return self._positions.copy()

    @property
    def target_places(self) -> np.ndarray:
        """``(K, 2)`` the targets' centres."""
        return self.targets.copy()

    def _observe(self) -> ResetResult:
        elapsed = np.array([self._t / self.episode_limit], dtype=np.float32)
        to_targets = (self.targets[None, :, :] - self._positions[:, None, :]).reshape(self.n_agents, -1)
        obs = []
        for i in range(self.n_agents):
            others = np.delete(self._positions, i, axis=0) - self._positions[i]
            obs.append(np.concatenate([self._positions[i], to_targets[i], others.reshape(-1), elapsed]))
        state = np.concatenate([self._positions.reshape(-1), self.targets.reshape(-1), elapsed])
        if self.state_type == "FP":
            ids = np.eye(self.n_agents, dtype=np.float32)
            share_obs = np.stack([np.concatenate([state, obs[i], ids[i]]) for i in range(self.n_agents)])
        else:
            share_obs = np.repeat(state[None], self.n_agents, axis=0)
        return obs, share_obs.astype(np.float32), [None] * self.n_agents

    def close(self) -> None:
        """Nothing to release."""
