"""Centralised Q network over the joint action of all agents, with one or more heads.

``Q_h(s, a_1, ..., a_n)`` for ``h < n_heads`` (1 for DDPG, 2 for the twin critics of TD3 and SAC).
Box actions enter as they are; Discrete actions enter one-hot, so the same network serves HASAC on
discrete tasks (HARL's "continuous" Q net takes observations and actions as inputs, whatever the
action type).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium
import torch
import torch.nn as nn
import torch.nn.functional as F

from harl.models.base.plain_mlp import PlainMLP
from harl.utils.configs_tools import ConfigError
from harl.utils.models_tools import get_active_func


def action_input_dim(act_space: gymnasium.Space) -> int:
    """Width of one agent's action in the critic input: ``a_i`` for Box, ``n_i`` for Discrete."""
    if isinstance(act_space, gymnasium.spaces.Box):
        return int(act_space.shape[0])
    if isinstance(act_space, gymnasium.spaces.Discrete):
        return int(act_space.n)
    raise NotImplementedError(f"unsupported action space {act_space}")


CRITIC_FORMS = ("joint", "additive", "joint_additive")


class _QHead(nn.Module):
    """One Q function. Its first layer is split into a state part and an action part:
    ``W [s; a] + b == W_s s + W_a a + b``, so a state shared by many candidate joint actions (HAQO)
    is projected once and broadcast, instead of being copied into every concatenated input.
    """

    def __init__(self, share_obs_dim: int, joint_action_dim: int, hidden_sizes: list[int], activation: str):
        super().__init__()
        self.obs_in = nn.Linear(share_obs_dim, hidden_sizes[0])
        self.act_in = nn.Linear(joint_action_dim, hidden_sizes[0], bias=False)
        # same distribution as PyTorch's default for one Linear over the concatenated input
        bound = 1.0 / math.sqrt(share_obs_dim + joint_action_dim)
        for p in (self.obs_in.weight, self.obs_in.bias, self.act_in.weight):
            nn.init.uniform_(p, -bound, bound)
        self.act = get_active_func(activation)
        self.rest = PlainMLP([*hidden_sizes, 1], activation)

    def forward(self, share_obs: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        return self.rest(self.act(self.obs_in(share_obs) + self.act_in(joint_actions)))


class _AdditiveQHead(nn.Module):
    """``Q(s, a) = v(s) + sum_i u_i(s)[a_i]`` (+ a joint head's ``Q(s, a)`` with ``with_joint``).

    One MLP of the state gives ``v`` and every agent's value of each of its actions, so that an
    agent's actions are ranked by their own outputs (dueling-style) rather than by a small
    perturbation of a joint input; ``a`` one-hot, ``sum_i u_i(s)[a_i] = u(s) . a``.
    """

    def __init__(self, share_obs_dim: int, joint_action_dim: int, hidden_sizes: list[int], activation: str,
                 with_joint: bool):
        super().__init__()
        self.values = PlainMLP([share_obs_dim, *hidden_sizes, 1 + joint_action_dim], activation)
        self.joint = _QHead(share_obs_dim, joint_action_dim, hidden_sizes, activation) if with_joint else None

    def forward(self, share_obs: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        out = self.values(share_obs)
        q = out[..., :1] + (out[..., 1:] * joint_actions).sum(-1, keepdim=True)
        return q if self.joint is None else q + self.joint(share_obs, joint_actions)


class ContinuousQNet(nn.Module):
    """``n_heads`` independent Q functions of (shared observation, joint action).

    Args:
        args: model keys ``hidden_sizes``, ``activation_func``, ``critic_form`` (``joint``: an MLP
            of ``[s; a]``; ``additive``: ``v(s) + sum_i u_i(s)[a_i]``; ``joint_additive``: their
            sum; the additive forms need Discrete actions).
        share_obs_space: Box of shape ``(s,)``.
        act_spaces: every agent's action space, in agent order.
        n_heads: number of Q functions.
        device: where the parameters live.
    """

    def __init__(
        self,
        args: dict,
        share_obs_space: gymnasium.spaces.Box,
        act_spaces: Sequence[gymnasium.Space],
        n_heads: int = 1,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        super().__init__()
        self.discrete_n = [
            int(sp.n) if isinstance(sp, gymnasium.spaces.Discrete) else 0 for sp in act_spaces
        ]
        self.joint_action_dim = sum(action_input_dim(sp) for sp in act_spaces)
        form = args["critic_form"]
        if form not in CRITIC_FORMS:
            raise ValueError(f"critic_form must be one of {', '.join(CRITIC_FORMS)}, not {form!r}")
        if form != "joint" and not all(self.discrete_n):
            raise ConfigError(f"critic_form {form!r} scores each agent's actions by their own outputs, which needs Discrete "
                             "actions for every agent; use critic_form joint for Box actions")
        dims = (share_obs_space.shape[0], self.joint_action_dim, list(args["hidden_sizes"]), args["activation_func"])
        self.heads = nn.ModuleList(
            _QHead(*dims) if form == "joint" else _AdditiveQHead(*dims, with_joint=form == "joint_additive")
            for _ in range(n_heads)
        )
        self.to(device)

    def encode_actions(self, actions: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Critic-format actions from env-format ones, per agent.

        Args:
            actions: per agent ``(..., a_i)`` for Box, ``(..., 1)`` indices for Discrete.

        Returns:
            per agent ``(..., c_i)``: Box unchanged, Discrete one-hot; ``torch.cat(..., -1)`` of
            them is the joint action ``(..., A)`` that :meth:`forward` takes.
        """
        return [
            F.one_hot(a.long().squeeze(-1), n).to(torch.float32) if n else a
            for a, n in zip(actions, self.discrete_n)
        ]

    def forward(self, share_obs: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        """Q-values of every head.

        Args:
            share_obs: ``(*lead_s, s)``.
            joint_actions: ``(*lead_a, A)``, critic encoding (see :meth:`encode_actions`);
                ``lead_s`` and ``lead_a`` broadcast against each other.

        Returns:
            ``(*broadcast(lead_s, lead_a), n_heads)``.
        """
        return torch.cat([head(share_obs, joint_actions) for head in self.heads], dim=-1)
