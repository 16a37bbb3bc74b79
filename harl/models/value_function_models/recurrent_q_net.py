"""The per-agent recurrent Q network of value decomposition (QMIX, VDN), one set of weights shared
by every agent, told apart by an agent-id input."""

from __future__ import annotations

import torch
from torch import nn

from harl.utils.models_tools import get_active_func, get_init_method


class RecurrentQNet(nn.Module):
    """``input -> MLP -> GRU -> linear -> Q(., a)`` for every action ``a``.

    Whole stored episodes start from a zero hidden state, so training runs the GRU over every
    episode in one ``nn.GRU`` call; acting steps it one environment step at a time.

    Args:
        input_dim: size of an agent's input (observation, last action, agent id, as the caller
            builds it).
        n_actions: number of actions (the largest over agents when they differ).
        hidden_sizes: MLP layers before the GRU; the GRU keeps the last size.
        activation_func: name for :func:`get_active_func`.
        initialization_method: ``torch.nn.init`` name for the linear layers.
        use_feature_normalization: LayerNorm on the input.
    """

    def __init__(
        self,
        input_dim: int,
        n_actions: int,
        hidden_sizes: list[int],
        activation_func: str,
        initialization_method: str,
        use_feature_normalization: bool,
    ) -> None:
        super().__init__()
        init = get_init_method(initialization_method)
        layers: list[nn.Module] = [nn.LayerNorm(input_dim)] if use_feature_normalization else []
        size = input_dim
        for hidden in hidden_sizes:
            linear = nn.Linear(size, hidden)
            init(linear.weight)
            nn.init.zeros_(linear.bias)
            layers += [linear, get_active_func(activation_func)]
            size = hidden
        self.body = nn.Sequential(*layers)
        self.hidden_size = size
        self.rnn = nn.GRU(size, size, batch_first=True)
        self.head = nn.Linear(size, n_actions)
        init(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def initial_state(self, batch: int, device: torch.device) -> torch.Tensor:
        """Zero hidden states ``(batch, H)``."""
        return torch.zeros(batch, self.hidden_size, device=device)

    def step(self, inputs: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``inputs (B, in)``, ``hidden (B, H)`` -> ``Q (B, n_actions)``, new hidden."""
        out, h = self.rnn(self.body(inputs).unsqueeze(1), hidden.unsqueeze(0))
        return self.head(out.squeeze(1)), h.squeeze(0)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Whole sequences from a zero state: ``inputs (B, T, in)`` -> ``Q (B, T, n_actions)``."""
        out, _ = self.rnn(self.body(inputs))
        return self.head(out)
