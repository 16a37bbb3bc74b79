"""What the Football adapter computes from the package's observations, apart from the package
itself (so that it can be tested without the engine): the tasks, HARL's global state and the
checkpoint reward."""

from __future__ import annotations

from typing import Any

import numpy as np

ACADEMY_PLAYERS: dict[str, int] = {
    "academy_3_vs_1_with_keeper": 3,
    "academy_counterattack_easy": 4,
    "academy_counterattack_hard": 4,
    "academy_pass_and_shoot_with_keeper": 2,
    "academy_run_pass_and_shoot_with_keeper": 2,
    "academy_corner": 11,
}
"""Tasks and the number of left players the agents control (HARL's and the paper's)."""

REPRESENTATIONS = ("simple115v2", "simple115")
REWARDS = ("scoring", "scoring,checkpoints")
N_ACTIONS = 19  # the package's default action set

# simple115 layout: teams 0-87, ball 88-90, ball direction 91-93, owner one-hot 94-96,
# active player one-hot 97-107, game mode one-hot 108-114
_ACTIVE = slice(97, 108)
_SHARED = np.r_[0:97, 108:115]

N_CHECKPOINTS = 10
CHECKPOINT_BONUS = 0.1
# ring k (k = 0..9) is collected when the ball carrier is within 0.99 - 0.8 k / 9 of the
# opponents' goal centre (1, 0)
_RING_RADII = 0.99 - 0.8 / (N_CHECKPOINTS - 1) * np.arange(N_CHECKPOINTS)


def checkpoint_rewards(observations: list[dict[str, Any]], scoring: np.ndarray, collected: np.ndarray) -> np.ndarray:
    """The checkpoint bonus of one step per controlled player; updates ``collected`` (rings
    already collected this episode, per player) in place."""
    bonus = np.zeros(len(observations), dtype=np.float64)
    for i, o in enumerate(observations):
        if scoring[i] == 1:
            bonus[i] = CHECKPOINT_BONUS * (N_CHECKPOINTS - collected[i])
            collected[i] = N_CHECKPOINTS
            continue
        carrying = o["ball_owned_team"] == 0 and o["ball_owned_player"] == o["active"]
        if not carrying:
            continue
        distance = float(np.hypot(o["ball"][0] - 1.0, o["ball"][1]))
        reached = int(np.count_nonzero(distance <= _RING_RADII))  # rings are nested
        if reached > collected[i]:
            bonus[i] = CHECKPOINT_BONUS * (reached - collected[i])
            collected[i] = reached
    return bonus


def global_state(obs: np.ndarray) -> np.ndarray:
    """HARL's global state from the controlled players' simple115 vectors ``(N, 115)``: what
    they all see once (teams, ball, owner, game mode) and each one's "active" one-hot,
    ``115 + 11 (N - 1)`` floats."""
    return np.concatenate([obs[0, _SHARED], obs[:, _ACTIVE].ravel()])
