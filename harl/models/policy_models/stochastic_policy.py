"""Stochastic policy network (HARL's ``StochasticPolicy``): MLPBase -> optional GRU -> ACTLayer."""

from __future__ import annotations

import gymnasium
import torch
from torch import nn

from harl.models.base.act import ActionDistribution, ACTLayer
from harl.models.base.mlp import MLPBase
from harl.models.base.rnn import RNNLayer
from harl.models.base.stacked import layers_key
from harl.utils.models_tools import ArrayLike, get_shape_from_obs_space, to_tensor


class StochasticPolicy(nn.Module):
    """Maps local observations to an action distribution.

    Args:
        args: model + algo config (``hidden_sizes``, ``activation_func``, ``initialization_method``,
            ``use_feature_normalization``, ``gain``, ``use_recurrent_policy``,
            ``use_naive_recurrent_policy``, ``recurrent_n``, ``use_policy_active_masks``,
            ``std_x_coef``, ``std_y_coef``).
        obs_space: the agent's observation space (flat Box).
        action_space: the agent's action space (Discrete or Box).
        device: where the parameters live; inputs may be numpy arrays or tensors anywhere.
    """

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.Space,
        action_space: gymnasium.Space,
        device: torch.device | str = torch.device("cpu"),
    ) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.use_policy_active_masks = args["use_policy_active_masks"]
        self.use_rnn = args["use_recurrent_policy"] or args["use_naive_recurrent_policy"]
        hidden_dim = args["hidden_sizes"][-1]

        self.base = MLPBase(args, get_shape_from_obs_space(obs_space))
        if self.use_rnn:
            self.rnn = RNNLayer(hidden_dim, hidden_dim, args["recurrent_n"], args["initialization_method"])
        self.act = ACTLayer(action_space, hidden_dim, args["initialization_method"], args["gain"], args)
        self.to(self.device)

    def stack_key(self) -> tuple:
        """Equal for policies whose acting step one :class:`StackedStochasticPolicy` can batch."""
        head = self.act.action_out
        return (
            layers_key(self.base.layers()),
            type(head).__name__,
            getattr(head, "std_x_coef", None),
            getattr(head, "std_y_coef", None),
            tuple((name, tuple(p.shape)) for name, p in self.named_parameters()),
        )

    def _features(self, obs: ArrayLike, rnn_states: ArrayLike, masks: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
        obs = to_tensor(obs, self.device)
        rnn_states = to_tensor(rnn_states, self.device)
        features = self.base(obs)
        if self.use_rnn:
            features, rnn_states = self.rnn(features, rnn_states, to_tensor(masks, self.device))
        return features, rnn_states

    def _optional(self, x: ArrayLike | None) -> torch.Tensor | None:
        return None if x is None else to_tensor(x, self.device)

    def forward(
        self,
        obs: ArrayLike,
        rnn_states: ArrayLike,
        masks: ArrayLike,
        available_actions: ArrayLike | None = None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Act for one step.

        Args:
            obs: ``(B, d)``; rnn_states: ``(B, recurrent_n, H)``; masks: ``(B, 1)``, 0 resets the
                hidden state; available_actions: ``(B, n)`` 0/1 mask for Discrete, else None.
            deterministic: take the distribution's mode instead of sampling.

        Returns:
            actions ``(B, a)``, action_log_probs (``(B, 1)`` Discrete, ``(B, a)`` Box, per
            dimension), rnn_states ``(B, recurrent_n, H)``.
        """
        features, rnn_states = self._features(obs, rnn_states, masks)
        actions, action_log_probs = self.act(features, self._optional(available_actions), deterministic)
        return actions, action_log_probs, rnn_states

    def evaluate_actions(
        self,
        obs: ArrayLike,
        rnn_states: ArrayLike,
        action: ArrayLike,
        masks: ArrayLike,
        available_actions: ArrayLike | None = None,
        active_masks: ArrayLike | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, ActionDistribution]:
        """Log-probs of stored actions, entropy and the distribution, for training.

        With a recurrent policy ``obs``/``action``/``masks`` hold ``T`` steps of ``N`` sequences
        flattened time-major and ``rnn_states`` the ``(N, recurrent_n, H)`` initial states.
        The entropy is averaged over active samples when ``use_policy_active_masks`` is on.
        """
        features, _ = self._features(obs, rnn_states, masks)
        if not self.use_policy_active_masks:
            active_masks = None
        return self.act.evaluate_actions(
            features,
            to_tensor(action, self.device),
            self._optional(available_actions),
            self._optional(active_masks),
        )
