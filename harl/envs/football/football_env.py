"""Google Research Football academy tasks through ``gfootball`` (``--env football``).

The package's gym wrappers call ``reset`` the pre-0.26 way and break with current gym, so the
adapter drives the package's core ``FootballEnv`` and builds what HARL's wrappers gave it:

* observation: per controlled player, the 115-float ``simple115v2`` vector (``simple115``: the
  package's older layout), from the package's ``Simple115StateWrapper.convert_observation``;
* global state (HARL's): one copy of what all players see (teams, ball, ball owner, game mode)
  and every controlled player's one-hot "active" block: ``115 + 11 (N - 1)`` floats, the same
  for every agent;
* actions: the 19 actions of the default action set, every one always available;
* reward: the team's, the first controlled player's ``scoring`` reward (+1 for a goal scored,
  -1 conceded) plus, with ``rewards: scoring,checkpoints``, the checkpoint bonus: 0.1 for each
  of ten distance rings around the opponents' goal that the ball carrier reaches first, and
  the rings not yet collected when a goal is scored (gfootball's checkpoint reward is per player and
  counts only while that player carries the ball; every agent gets player 0's, as HARL's
  football env does with ``rew[0]``);
* episode metrics: ``score_rate`` (1 when the episode ended on a goal for the agents' team,
  the paper's "score rate", HARL's ``eval_score_rate``) and ``goals`` (goals scored minus
  conceded). An episode that reaches the scenario's ``game_duration`` is a truncation.

Each step of the engine takes several milliseconds of CPU (about 130 steps/s here), so the
environment's default is one worker process per CPU core (``default_env_workers``).
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np
from gymnasium import spaces

# gfootball imports the old gym, which prints a notice that it is unmaintained on import; the
# adapter uses none of gym's code paths (see the module doc), so the notice is dropped
with contextlib.redirect_stderr(io.StringIO()):
    from gfootball.env import config as football_config
    from gfootball.env import football_env, wrappers

from harl.envs import check_env_args
from harl.envs.base import EnvStepResult, MultiAgentEnv, ResetResult
from harl.envs.football.features import (
    ACADEMY_PLAYERS,
    N_ACTIONS,
    REPRESENTATIONS,
    REWARDS,
    checkpoint_rewards,
    global_state,
)

# env_args that only concern pixel observations, video and dumps: this adapter writes neither
_OFF_KEYS = ("stacked", "render", "write_video", "write_goal_dumps", "write_full_episode_dumps")


class FootballEnv(MultiAgentEnv):
    """One academy episode of Google Research Football, the left team's players as agents."""

    episode_metric_names = ("score_rate", "goals")
    default_env_workers = -1

    def __init__(self, env_args: dict[str, Any]) -> None:
        args = check_env_args("football", env_args)
        self.env_name: str = args["env_name"]
        self.n_agents = int(args["number_of_left_players_agent_controls"])
        self._fixed_positions = args["representation"] == "simple115v2"
        self._checkpoints = args["rewards"] == "scoring,checkpoints"
        self._convert = wrappers.Simple115StateWrapper.convert_observation
        values = {
            "level": self.env_name,
            "players": [f"agent:left_players={self.n_agents},right_players=0"],
            "dump_full_episodes": False,
            "dump_scores": False,
            "write_video": False,
            "tracesdir": args["logdir"] or "",
            **copy.deepcopy(args["other_config_options"] or {}),
        }
        self._config = football_config.Config(values)
        self._env = football_env.FootballEnv(self._config)
        self.episode_limit = int(self._config.ScenarioConfig().game_duration)
        self._rng = np.random.default_rng()
        self._collected = np.zeros(self.n_agents, dtype=np.int64)
        self._steps = 0
        self._goals = 0.0
        state_size = 115 + 11 * (self.n_agents - 1)
        self.observation_spaces = [spaces.Box(-np.inf, np.inf, (115,), dtype=np.float32)] * self.n_agents
        self.share_observation_spaces = [spaces.Box(-np.inf, np.inf, (state_size,), dtype=np.float32)] * self.n_agents
        self.action_spaces = [spaces.Discrete(N_ACTIONS)] * self.n_agents
        self._avail = [np.ones(N_ACTIONS, dtype=np.float32)] * self.n_agents

    @staticmethod
    def check_args(args: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming the supported values."""
        name = args["env_name"]
        if name not in ACADEMY_PLAYERS:
            raise ValueError(f"football: unsupported env_name {name!r}; supported: {', '.join(ACADEMY_PLAYERS)}")
        players = args["number_of_left_players_agent_controls"]
        if players != ACADEMY_PLAYERS[name]:
            raise ValueError(
                f"football: {name} is played with {ACADEMY_PLAYERS[name]} controlled players (HARL, the "
                f"paper), got number_of_left_players_agent_controls={players!r}; pass "
                f"--number_of_left_players_agent_controls {ACADEMY_PLAYERS[name]}"
            )
        if args["number_of_right_players_agent_controls"] != 0:
            raise ValueError(
                "football: the agents play the left team only; number_of_right_players_agent_controls must be 0"
            )
        if args["representation"] not in REPRESENTATIONS:
            raise ValueError(
                f"football: unsupported representation {args['representation']!r}; supported: "
                f"{', '.join(REPRESENTATIONS)} (the 115-float vector; pixel and minimap "
                "observations need convolutional networks this package does not have)"
            )
        if args["rewards"] not in REWARDS:
            raise ValueError(f"football: rewards must be one of {', '.join(REWARDS)}, got {args['rewards']!r}")
        switched_on = [key for key in _OFF_KEYS if args[key]]
        if switched_on:
            raise ValueError(f"football: {', '.join(switched_on)} must be False (no rendering, video or dumps here)")
        if args["extra_players"]:
            raise ValueError("football: extra_players is not supported (the academy opponents are built in)")
        options = args["other_config_options"]
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"football: other_config_options must be a dict or None, got {options!r}")

    def _seed_episode(self) -> None:
        # The package draws each episode's engine seed from Python's global random module;
        # drawing it here from the environment's own stream makes runs repeatable.
        seed = int(self._rng.integers(0, 2_000_000_000))
        self._config._values["game_engine_random_seed"] = seed
        self._config._values["reverse_team_processing"] = bool(seed % 2)

    def _observe(self, raw: list[dict[str, Any]]) -> tuple[list[np.ndarray], np.ndarray]:
        obs = self._convert(raw, self._fixed_positions)  # (N, 115) float32
        state = global_state(obs)
        return list(obs), np.broadcast_to(state, (self.n_agents, state.shape[0]))

    def reset(self, seed: int | None = None) -> ResetResult:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._seed_episode()
        raw = self._env.reset()
        self._collected[:] = 0
        self._steps = 0
        self._goals = 0.0
        obs, state = self._observe(raw)
        return obs, state, self._avail

    def step(self, actions: list[np.ndarray]) -> EnvStepResult:
        raw, scoring, done, info = self._env.step([int(np.asarray(a).reshape(-1)[0]) for a in actions])
        self._steps += 1
        reward = scoring.astype(np.float64)
        if self._checkpoints:
            reward = reward + checkpoint_rewards(raw, scoring, self._collected)
        score = float(info["score_reward"])
        self._goals += score
        obs, state = self._observe(raw)
        out_info: dict[str, Any] = {"bad_transition": False}
        if done:
            out_info["bad_transition"] = self._steps >= self.episode_limit and score == 0
            out_info["episode_metrics"] = {"score_rate": float(score > 0), "goals": self._goals}
        rewards = np.full(self.n_agents, reward[0], dtype=np.float32)
        dones = np.full(self.n_agents, bool(done))
        return obs, state, rewards, dones, out_info, self._avail

    def close(self) -> None:
        self._env.close()
