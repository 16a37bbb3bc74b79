"""State-value network (HARL's ``VNet``): MLPBase -> optional GRU -> linear value head."""

from __future__ import annotations

import gymnasium
import torch
from torch import nn

from harl.models.base.mlp import MLPBase
from harl.models.base.rnn import RNNLayer
from harl.utils.models_tools import ArrayLike, get_shape_from_obs_space, init_linear, to_tensor


class VNet(nn.Module):
    """Maps a centralised observation to ``V(s)``.

    Args:
        args: model config (``hidden_sizes``, ``activation_func``, ``initialization_method``,
            ``use_feature_normalization``, ``use_recurrent_policy``, ``use_naive_recurrent_policy``,
            ``recurrent_n``).
        cent_obs_space: the critic's input space (flat Box).
        device: where the parameters live.
    """

    def __init__(
        self, args: dict, cent_obs_space: gymnasium.Space, device: torch.device | str = torch.device("cpu")
    ) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.use_rnn = args["use_recurrent_policy"] or args["use_naive_recurrent_policy"]
        hidden_dim = args["hidden_sizes"][-1]

        self.base = MLPBase(args, get_shape_from_obs_space(cent_obs_space))
        if self.use_rnn:
            self.rnn = RNNLayer(hidden_dim, hidden_dim, args["recurrent_n"], args["initialization_method"])
        # HARL initialises the value head with gain 1, not the policy head's small gain.
        self.v_out = init_linear(hidden_dim, 1, args["initialization_method"], gain=1.0)
        self.to(self.device)

    def forward(
        self, cent_obs: ArrayLike, rnn_states: ArrayLike, masks: ArrayLike
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Values ``(B, 1)`` and rnn states ``(B, recurrent_n, H)`` (sequence layout as the policy)."""
        features = self.base(to_tensor(cent_obs, self.device))
        rnn_states = to_tensor(rnn_states, self.device)
        if self.use_rnn:
            features, rnn_states = self.rnn(features, rnn_states, to_tensor(masks, self.device))
        return self.v_out(features), rnn_states
