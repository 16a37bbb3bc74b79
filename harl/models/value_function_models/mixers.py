"""Mixing networks of value decomposition: ``Q_tot(s, q_1..q_N)`` from the agents' chosen Qs.

* :class:`VDNMixer` (Sunehag et al. 2018): ``Q_tot = sum_i q_i``.
* :class:`QMixer` (Rashid et al. 2018): a two-layer network over the ``q_i`` whose weights are
  produced by hypernetworks of the global state and made non-negative (absolute values), so
  ``dQ_tot / dq_i >= 0`` for every agent and state: the per-agent arg-max is the joint arg-max.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class VDNMixer(nn.Module):
    """``Q_tot = sum_i q_i``; the state is ignored."""

    def __init__(self, n_agents: int, state_dim: int, args: dict) -> None:
        super().__init__()

    def forward(self, agent_qs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """``agent_qs (..., N)`` -> ``(..., 1)``."""
        return agent_qs.sum(-1, keepdim=True)


def _hypernet(state_dim: int, hidden: int, out: int, layers: int) -> nn.Module:
    """``state -> out``: one linear layer, or two with a ReLU between (``hypernet_layers``)."""
    if layers == 1:
        return nn.Linear(state_dim, out)
    return nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, out))


class QMixer(nn.Module):
    """Monotonic mixing network.

    ``h = elu(q W1(s) + b1(s))``, ``Q_tot = h W2(s) + V(s)`` with ``W1 = |hyper_w1(s)|``
    ``(N, E)`` and ``W2 = |hyper_w2(s)|`` ``(E, 1)``; ``b1`` and ``V`` are unconstrained.

    Args:
        n_agents: ``N``.
        state_dim: size of the global state.
        args: ``mixing_embed_dim`` (``E``), ``hypernet_embed`` (hidden size of the
            hypernetworks), ``hypernet_layers`` (1 or 2), ``use_feature_normalization``
            (LayerNorm on the state before the hypernetworks: a state of raw coordinates, as
            SMAX's, otherwise starts the mixer at Q values in the tens).
    """

    def __init__(self, n_agents: int, state_dim: int, args: dict) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.embed = int(args["mixing_embed_dim"])
        hidden, layers = int(args["hypernet_embed"]), int(args["hypernet_layers"])
        if layers not in (1, 2):
            raise ValueError(f"hypernet_layers must be 1 or 2, not {layers}")
        self.state_norm = nn.LayerNorm(state_dim) if args["use_feature_normalization"] else nn.Identity()
        self.hyper_w1 = _hypernet(state_dim, hidden, n_agents * self.embed, layers)
        self.hyper_w2 = _hypernet(state_dim, hidden, self.embed, layers)
        self.hyper_b1 = nn.Linear(state_dim, self.embed)
        self.value = nn.Sequential(nn.Linear(state_dim, self.embed), nn.ReLU(), nn.Linear(self.embed, 1))

    def forward(self, agent_qs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """``agent_qs (..., N)``, ``states (..., s)`` -> ``Q_tot (..., 1)``."""
        lead = agent_qs.shape[:-1]
        q = agent_qs.reshape(-1, 1, self.n_agents)
        s = self.state_norm(states.reshape(-1, states.shape[-1]))
        w1 = self.hyper_w1(s).abs().view(-1, self.n_agents, self.embed)
        b1 = self.hyper_b1(s).view(-1, 1, self.embed)
        hidden = F.elu(torch.bmm(q, w1) + b1)
        w2 = self.hyper_w2(s).abs().view(-1, self.embed, 1)
        q_tot = torch.bmm(hidden, w2).view(-1, 1) + self.value(s)
        return q_tot.view(*lead, 1)


MIXER_REGISTRY: dict[str, type[nn.Module]] = {"qmix": QMixer, "vdn": VDNMixer}
