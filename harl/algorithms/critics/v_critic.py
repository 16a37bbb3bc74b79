"""State-value critic (HARL's ``VCritic``)."""

from __future__ import annotations

from typing import Iterator

import gymnasium
import torch
from torch import nn

from harl.common.buffers.on_policy_buffer_utils import CriticBatch, OnPolicyCriticBufferBase
from harl.common.valuenorm import ValueNorm
from harl.models.value_function_models.v_net import VNet
from harl.utils.finite import guarded_step
from harl.utils.models_tools import (
    ArrayLike,
    get_grad_norm,
    huber_loss,
    mse_loss,
    to_tensor,
    update_linear_schedule,
)


class VCritic:
    """Learns ``V(s)`` by regression on the buffer's returns.

    Args:
        args: ``{**algo_args["model"], **algo_args["algo"]}`` (``clip_param``, ``critic_epoch``,
            ``critic_num_mini_batch``, ``data_chunk_length``, ``value_loss_coef``,
            ``use_max_grad_norm``, ``max_grad_norm``, ``use_clipped_value_loss``,
            ``use_huber_loss``, ``huber_delta``, ``use_recurrent_policy``,
            ``use_naive_recurrent_policy``, ``critic_lr``, ``opti_eps``, ``weight_decay`` and the
            network keys).
        cent_obs_space: the critic's input space.
        device: torch device of the network.
    """

    def __init__(
        self, args: dict, cent_obs_space: gymnasium.Space, device: torch.device | str = torch.device("cpu")
    ) -> None:
        self.args = args
        self.device = torch.device(device)
        self.clip_param = args["clip_param"]
        self.critic_epoch = args["critic_epoch"]
        self.critic_num_mini_batch = args["critic_num_mini_batch"]
        self.data_chunk_length = args["data_chunk_length"]
        self.value_loss_coef = args["value_loss_coef"]
        self.use_max_grad_norm = args["use_max_grad_norm"]
        self.max_grad_norm = args["max_grad_norm"]
        self.use_clipped_value_loss = args["use_clipped_value_loss"]
        self.use_huber_loss = args["use_huber_loss"]
        self.huber_delta = args["huber_delta"]
        self.use_recurrent_policy = args["use_recurrent_policy"]
        self.use_naive_recurrent_policy = args["use_naive_recurrent_policy"]
        self.critic_lr = args["critic_lr"]

        self.share_obs_space = cent_obs_space
        self.critic = VNet(args, cent_obs_space, self.device)
        self.critic_optimizer = torch.optim.Adam(
            self.critic.parameters(), lr=self.critic_lr, eps=args["opti_eps"], weight_decay=args["weight_decay"]
        )

    def get_values(
        self, cent_obs: ArrayLike, rnn_states_critic: ArrayLike, masks: ArrayLike
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Values ``(B, 1)`` (normalised when a ValueNorm is used) and next rnn states."""
        return self.critic(cent_obs, rnn_states_critic, masks)

    def cal_value_loss(
        self,
        values: torch.Tensor,
        value_preds_batch: torch.Tensor,
        return_batch: torch.Tensor,
        value_normalizer: ValueNorm | None = None,
    ) -> torch.Tensor:
        """Value loss of new predictions against the returns.

        With a ValueNorm the (unnormalised) returns first update its statistics and are then
        normalised, since the network predicts normalised values. The clipped loss
        ``max(l(R - V), l(R - V_old - clip(V - V_old, -eps, eps)))`` keeps the new predictions
        near those made during the rollout, as the PPO policy clip does for the actor.
        """
        if value_normalizer is not None:
            value_normalizer.update(return_batch)
            return_batch = value_normalizer.normalize(return_batch)
        loss_fn = (lambda e: huber_loss(e, self.huber_delta)) if self.use_huber_loss else mse_loss

        value_loss = loss_fn(return_batch - values)
        if self.use_clipped_value_loss:
            values_clipped = value_preds_batch + (values - value_preds_batch).clamp(-self.clip_param, self.clip_param)
            value_loss = torch.max(value_loss, loss_fn(return_batch - values_clipped))
        return value_loss.mean()

    def update(self, batch: CriticBatch, value_normalizer: ValueNorm | None = None) -> tuple[torch.Tensor, float]:
        """One gradient step on ``batch``; returns the value loss and the pre-clipping grad norm."""
        values, _ = self.get_values(batch.share_obs, batch.rnn_states_critic, batch.masks)
        value_loss = self.cal_value_loss(
            values,
            to_tensor(batch.value_preds, self.device),
            to_tensor(batch.returns, self.device),
            value_normalizer,
        )

        self.critic_optimizer.zero_grad()
        (value_loss * self.value_loss_coef).backward()
        if self.use_max_grad_norm:
            grad_norm = float(nn.utils.clip_grad_norm_(self.critic.parameters(), self.max_grad_norm))
        else:
            grad_norm = get_grad_norm(self.critic.parameters())
        guarded_step(self.critic_optimizer, value_loss, "critic")
        return value_loss.detach(), grad_norm

    def train(
        self, critic_buffer: OnPolicyCriticBufferBase, value_normalizer: ValueNorm | None = None
    ) -> dict[str, float]:
        """``critic_epoch`` passes of ``critic_num_mini_batch`` updates over an EP or FP buffer.

        Returns the mean ``value_loss`` and ``critic_grad_norm`` over updates.
        """
        totals = {"value_loss": 0.0, "critic_grad_norm": 0.0}
        num_updates = 0
        for _ in range(self.critic_epoch):
            for batch in self._data_generator(critic_buffer):
                value_loss, grad_norm = self.update(batch, value_normalizer)
                totals["value_loss"] += float(value_loss)
                totals["critic_grad_norm"] += grad_norm
                num_updates += 1
        return {key: total / num_updates for key, total in totals.items()}

    def _data_generator(self, critic_buffer: OnPolicyCriticBufferBase) -> Iterator[CriticBatch]:
        if self.use_recurrent_policy:
            return critic_buffer.recurrent_generator_critic(self.critic_num_mini_batch, self.data_chunk_length)
        if self.use_naive_recurrent_policy:
            return critic_buffer.naive_recurrent_generator_critic(self.critic_num_mini_batch)
        return critic_buffer.feed_forward_generator_critic(self.critic_num_mini_batch)

    def lr_decay(self, episode: int, episodes: int) -> None:
        """Linearly decay the critic learning rate."""
        update_linear_schedule(self.critic_optimizer, episode, episodes, self.critic_lr)

    def prep_training(self) -> None:
        """Put the critic in training mode."""
        self.critic.train()

    def prep_rollout(self) -> None:
        """Put the critic in evaluation mode."""
        self.critic.eval()
