"""Centralised Q network over the joint action of all agents, with one or more heads.

``Q_h(s, a_1, ..., a_n)`` for ``h < n_heads`` (1 for DDPG, 2 for the twin critics of TD3 and SAC).
Box actions enter as they are; Discrete actions enter one-hot, so the same network serves HASAC on
discrete tasks (HARL's "continuous" Q net takes observations and actions as inputs, whatever the
action type).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import gymnasium
import torch
import torch.nn as nn
import torch.nn.functional as F

from harl.models.base.plain_mlp import PlainMLP
from harl.utils.errors import ConfigError
from harl.utils.models_tools import get_active_func


def action_input_dim(act_space: gymnasium.Space) -> int:
    """Width of one agent's action in the critic input: ``a_i`` for Box, ``n_i`` for Discrete."""
    if isinstance(act_space, gymnasium.spaces.Box):
        return int(act_space.shape[0])
    if isinstance(act_space, gymnasium.spaces.Discrete):
        return int(act_space.n)
    raise NotImplementedError(f"unsupported action space {act_space}")


# auto: additive_local where every agent's actions are Discrete, joint otherwise
CRITIC_FORMS = ("auto", "joint", "additive", "joint_additive", "additive_local")
# forms whose per-agent utilities read each agent's own observation (the critic then needs ``obs``)
LOCAL_FORMS = ("additive_local",)


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

    def __init__(
        self, share_obs_dim: int, joint_action_dim: int, hidden_sizes: list[int], activation: str, with_joint: bool
    ):
        super().__init__()
        self.values = PlainMLP([share_obs_dim, *hidden_sizes, 1 + joint_action_dim], activation)
        self.joint = _QHead(share_obs_dim, joint_action_dim, hidden_sizes, activation) if with_joint else None

    def forward(self, share_obs: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        out = self.values(share_obs)
        q = out[..., :1] + (out[..., 1:] * joint_actions).sum(-1, keepdim=True)
        return q if self.joint is None else q + self.joint(share_obs, joint_actions)


class _LocalAdditiveQHead(nn.Module):
    """``Q(s, a) = v(s) + sum_i u(o_i, i)[a_i]``: one utility MLP shared by every agent, fed that
    agent's own observation (zero-padded to the widest) and its one-hot index.

    The value decomposition of VDN with a state baseline: an agent's actions are ranked by what
    its own observation shows (an enemy in range, its health), learned from every agent's
    transitions at once, instead of by a small term of a joint Q of the global state.
    """

    def __init__(
        self,
        share_obs_dim: int,
        obs_dims: Sequence[int],
        action_ns: Sequence[int],
        hidden_sizes: list[int],
        activation: str,
    ):
        super().__init__()
        n_agents, width, most = len(obs_dims), max(obs_dims), max(action_ns)
        self.width, self.action_ns = width, list(action_ns)
        self.value = PlainMLP([share_obs_dim, *hidden_sizes, 1], activation)
        self.utility = PlainMLP([width + n_agents, *hidden_sizes, most], activation)
        # agent i's n_i actions inside the flattened (N * most) utility outputs
        index = torch.cat([i * most + torch.arange(n) for i, n in enumerate(action_ns)])
        self.register_buffer("action_index", index, persistent=False)
        self.register_buffer("agent_ids", torch.eye(n_agents), persistent=False)

    def _padded(self, obs: torch.Tensor) -> torch.Tensor:
        return F.pad(obs, (0, self.width - obs.shape[-1]))

    def _utility_outputs(self, padded: torch.Tensor, agent_ids: torch.Tensor) -> torch.Tensor:
        """The utility MLP on padded observations with their agents' one-hot indices
        ``agent_ids`` (broadcast over the leading dimensions): ``(..., most)``."""
        return self.utility(torch.cat([padded, agent_ids.expand(*padded.shape[:-1], -1)], -1))

    def utilities(self, obs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per agent ``(*L, d_i)`` -> ``(*L, A)``, agent-major like the one-hot joint action."""
        x = torch.stack([self._padded(o) for o in obs], -2)
        return self._utility_outputs(x, self.agent_ids).flatten(-2)[..., self.action_index]

    def agent_utilities(self, obs: torch.Tensor, agent_id: int) -> torch.Tensor:
        """One agent's utilities ``(*L, n_i)`` from its observations ``(*L, d_i)`` alone (what the
        agent can compute without the others: its greedy action is their arg-max)."""
        outputs = self._utility_outputs(self._padded(obs), self.agent_ids[agent_id])
        return outputs[..., : self.action_ns[agent_id]]

    def scorer(self, share_obs: torch.Tensor, obs: Sequence[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """``Q(s, .)`` as a function of joint actions, with ``v(s)`` and the utilities computed
        once: Q is linear in the one-hot joint action, so scoring many candidates is a dot product."""
        value, utilities = self.value(share_obs), self.utilities(obs)
        return lambda joint_actions: value + (utilities * joint_actions).sum(-1, keepdim=True)

    def forward(
        self, share_obs: torch.Tensor, joint_actions: torch.Tensor, obs: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        return self.scorer(share_obs, obs)(joint_actions)


def critic_hidden_sizes(args: dict) -> list[int]:
    """The critic's hidden layer sizes: ``critic_hidden_sizes``, or ``hidden_sizes`` (the
    actor's) where that key is null or absent (the configs without a critic width of their own)."""
    sizes = args.get("critic_hidden_sizes")
    if sizes is None:
        return list(args["hidden_sizes"])
    if not (
        isinstance(sizes, (list, tuple))
        and sizes
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes)
    ):
        raise ConfigError(f"critic_hidden_sizes must be null or a non-empty list of positive integers, got {sizes!r}")
    return list(sizes)


class ContinuousQNet(nn.Module):
    """``n_heads`` independent Q functions of (shared observation, joint action).

    Args:
        args: model keys ``hidden_sizes`` (or ``critic_hidden_sizes``), ``activation_func``, ``critic_form`` (``auto``:
            ``additive_local`` if every agent's actions are Discrete, else ``joint``; ``joint``: an MLP
            of ``[s; a]``; ``additive``: ``v(s) + sum_i u_i(s)[a_i]``; ``joint_additive``: their
            sum; ``additive_local``: ``v(s) + sum_i u(o_i, i)[a_i]``, which needs ``obs_spaces``
            and the observations at every call; the additive forms need Discrete actions).
        share_obs_space: Box of shape ``(s,)``.
        act_spaces: every agent's action space, in agent order.
        n_heads: number of Q functions.
        device: where the parameters live.
        obs_spaces: every agent's observation space, Box ``(d_i,)`` (``additive_local`` only).
    """

    def __init__(
        self,
        args: dict,
        share_obs_space: gymnasium.spaces.Box,
        act_spaces: Sequence[gymnasium.Space],
        n_heads: int = 1,
        device: torch.device = torch.device("cpu"),
        obs_spaces: Sequence[gymnasium.spaces.Box] | None = None,
    ) -> None:
        super().__init__()
        self.discrete_n = [int(sp.n) if isinstance(sp, gymnasium.spaces.Discrete) else 0 for sp in act_spaces]
        self.joint_action_dim = sum(action_input_dim(sp) for sp in act_spaces)
        form = args["critic_form"]
        if form not in CRITIC_FORMS:
            raise ValueError(f"critic_form must be one of {', '.join(CRITIC_FORMS)}, not {form!r}")
        if form == "auto":
            form = "additive_local" if all(self.discrete_n) else "joint"
        self.form = form
        if form != "joint" and not all(self.discrete_n):
            raise ConfigError(
                f"critic_form {form!r} scores each agent's actions by their own outputs, which needs Discrete "
                "actions for every agent; use critic_form joint for Box actions"
            )
        self.needs_obs = form in LOCAL_FORMS
        hidden, activation = critic_hidden_sizes(args), args["activation_func"]
        dims = (share_obs_space.shape[0], self.joint_action_dim, hidden, activation)
        if self.needs_obs:
            if obs_spaces is None:
                raise ValueError(f"critic_form {form!r} needs every agent's observation space (obs_spaces)")
            obs_dims = [int(sp.shape[0]) for sp in obs_spaces]
            self.heads = nn.ModuleList(
                _LocalAdditiveQHead(share_obs_space.shape[0], obs_dims, self.discrete_n, hidden, activation)
                for _ in range(n_heads)
            )
        else:
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
            F.one_hot(a.long().squeeze(-1), n).to(torch.float32) if n else a for a, n in zip(actions, self.discrete_n)
        ]

    def scorer(
        self, share_obs: torch.Tensor, obs: Sequence[torch.Tensor] | None = None
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`forward` at fixed states (and observations) as a function of joint actions. The
        ``additive_local`` heads compute their state values and utilities here, once, so a caller
        that scores many joint actions at the same states (HAQO's actor round) pays for them once."""
        if not self.needs_obs:
            return lambda joint_actions: self(share_obs, joint_actions)
        if obs is None:
            raise ValueError("this critic form scores actions from each agent's observation: pass obs")
        scorers = [head.scorer(share_obs, obs) for head in self.heads]
        return lambda joint_actions: torch.cat([score(joint_actions) for score in scorers], dim=-1)

    def forward(
        self, share_obs: torch.Tensor, joint_actions: torch.Tensor, obs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Q-values of every head.

        Args:
            share_obs: ``(*lead_s, s)``.
            joint_actions: ``(*lead_a, A)``, critic encoding (see :meth:`encode_actions`);
                ``lead_s`` and ``lead_a`` broadcast against each other.
            obs: per agent ``(*lead_o, d_i)`` (``additive_local`` only; ``lead_o`` broadcasts
                against ``lead_a``, e.g. ``(B,)`` against ``(K, B)`` candidates).

        Returns:
            ``(*broadcast(lead_s, lead_a), n_heads)``.
        """
        if not self.needs_obs:
            return torch.cat([head(share_obs, joint_actions) for head in self.heads], dim=-1)
        return self.scorer(share_obs, obs)(joint_actions)
