"""Landmark coverage (the paper's Fig. 5): two agents and three landmarks on mpe2's simple_spread.

The scenario is mpe2's ``simple_spread`` (its world, physics, observations, reward: minus the sum
over landmarks of the nearest agent's distance, and the collision penalty) with fewer agents than
landmarks, and the landmarks at fixed places (an equilateral triangle around the centre) so that
"which landmarks are covered" means the same in every episode and visitation densities can be
compared. Two agents cannot hold three landmarks, so each must pick among them: a multimodal
choice a policy can keep balanced or collapse.
"""

from __future__ import annotations

import numpy as np
from mpe2._mpe_utils.simple_env import SimpleEnv
from mpe2.simple_spread.simple_spread import Scenario as SpreadScenario

from harl.envs.coverage import occupancy

N_AGENTS = 2
N_LANDMARKS = 3
# Landmarks sit this far from the centre of the [-1, 1]^2 start area.
LANDMARK_DISTANCE = 0.5
# A landmark is held while an agent's centre is this close (agents have radius 0.15).
HOLD_RADIUS = 0.2


def landmark_places() -> np.ndarray:
    """``(3, 2)`` fixed landmark positions, the first straight above the centre."""
    angles = np.pi / 2 + 2 * np.pi * np.arange(N_LANDMARKS) / N_LANDMARKS
    return LANDMARK_DISTANCE * np.stack([np.cos(angles), np.sin(angles)], axis=1)


class _CoverageScenario(SpreadScenario):
    """simple_spread's scenario with ``N_AGENTS`` agents and ``N_LANDMARKS`` fixed landmarks."""

    def make_world(self, N: int = N_AGENTS):
        world = super().make_world(N_LANDMARKS)  # as many agents as landmarks, then drop the extra
        world.agents = world.agents[:N]
        return world

    def reset_world(self, world, np_random: np.random.Generator) -> None:
        super().reset_world(world, np_random)
        for landmark, place in zip(world.landmarks, landmark_places()):
            landmark.state.p_pos = place.copy()


class raw_env(SimpleEnv):  # noqa: N801 - mpe2's name for a scenario's AEC environment
    """mpe2's AEC environment of the landmark-coverage scenario (simple_spread's local ratio 0.5)."""

    def __init__(self, max_cycles: int = 25, continuous_actions: bool = False) -> None:
        scenario = _CoverageScenario()
        super().__init__(
            scenario=scenario,
            world=scenario.make_world(N_AGENTS),
            max_cycles=max_cycles,
            continuous_actions=continuous_actions,
            local_ratio=0.5,
        )
        self.metadata["name"] = "landmark_coverage"


def held_landmarks(world) -> np.ndarray:
    """``(3,)`` bool: some agent is within ``HOLD_RADIUS`` of landmark ``k``."""
    return occupancy(
        np.stack([agent.state.p_pos for agent in world.agents]),
        np.stack([landmark.state.p_pos for landmark in world.landmarks]),
        HOLD_RADIUS,
    )
