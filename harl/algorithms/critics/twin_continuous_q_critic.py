"""Twin centralised Q critic (HATD3, MATD3): clipped double Q-learning (Fujimoto et al. 2018)."""

from __future__ import annotations

from harl.algorithms.critics.continuous_q_critic import ContinuousQCritic


class TwinContinuousQCritic(ContinuousQCritic):
    """Two Q functions trained on the same target ``y = R + gamma^k (1 - d) min(Q'_1, Q'_2)``;
    actors maximise the first one (TD3). Same constructor and API as :class:`ContinuousQCritic`.
    """

    n_heads = 2
