"""Base class of the on-policy actors (HARL's ``OnPolicyBase``) and helpers shared by them."""

from __future__ import annotations

from typing import Iterator

import gymnasium
import numpy as np
import torch
from torch import nn

from harl.common.buffers.on_policy_actor_buffer import ActorBatch, OnPolicyActorBuffer
from harl.envs.base import check_state_type
from harl.models.base.act import ActionDistribution
from harl.models.policy_models.stochastic_policy import StochasticPolicy
from harl.utils.finite import guarded_step
from harl.utils.models_tools import (
    ArrayLike,
    get_grad_norm,
    masked_mean,
    to_tensor,
    update_linear_schedule,
)

ACTION_AGGREGATIONS = ("prod", "mean")


def aggregate_ratio(log_probs: torch.Tensor, old_log_probs: torch.Tensor, action_aggregation: str) -> torch.Tensor:
    """Policy ratio ``pi_new / pi_old`` per sample, ``(B, 1)``, from per-dimension log-probs.

    ``prod`` multiplies the per-dimension ratios (the exact joint ratio, computed as the exp of
    the summed log-ratio); ``mean`` averages them (HARL's alternative for wide Box actions).
    Runners use the same function to update the HAPPO factor ``M`` between agents.
    """
    log_ratio = log_probs - old_log_probs
    if action_aggregation == "prod":
        return torch.exp(log_ratio.sum(dim=-1, keepdim=True))
    if action_aggregation == "mean":
        return torch.exp(log_ratio).mean(dim=-1, keepdim=True)
    raise ValueError(f"action_aggregation must be one of {ACTION_AGGREGATIONS}, got {action_aggregation!r}")


def normalize_advantages(advantages: np.ndarray, active_masks: np.ndarray) -> np.ndarray:
    """Standardise advantages with the mean and std of the entries where the agent was active."""
    active = advantages[np.broadcast_to(active_masks, advantages.shape) != 0.0]
    return (advantages - active.mean()) / (active.std() + 1e-5)


class OnPolicyBase:
    """An agent's policy, its optimiser and the shared training loop.

    Subclasses set ``num_epochs``/``num_mini_batch`` and implement ``update(batch)``, which
    returns the per-mini-batch values of ``train_info_keys``.

    Args:
        args: ``{**algo_args["model"], **algo_args["algo"]}``.
        obs_space: the agent's observation space.
        act_space: the agent's action space.
        device: torch device of the networks.
    """

    uses_optimizer = True
    train_info_keys: tuple[str, ...] = ("policy_loss", "dist_entropy", "actor_grad_norm", "ratio")

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.Space,
        act_space: gymnasium.Space,
        device: torch.device | str = torch.device("cpu"),
    ) -> None:
        self.args = args
        self.device = torch.device(device)
        self.obs_space = obs_space
        self.act_space = act_space

        self.data_chunk_length = args["data_chunk_length"]
        self.use_recurrent_policy = args["use_recurrent_policy"]
        self.use_naive_recurrent_policy = args["use_naive_recurrent_policy"]
        self.use_policy_active_masks = args["use_policy_active_masks"]
        self.action_aggregation = args["action_aggregation"]
        if self.action_aggregation not in ACTION_AGGREGATIONS:
            raise ValueError(
                f"action_aggregation must be one of {ACTION_AGGREGATIONS}, got {self.action_aggregation!r}"
            )

        self.actor = StochasticPolicy(args, obs_space, act_space, self.device)
        self.actor_optimizer: torch.optim.Optimizer | None = None
        if self.uses_optimizer:
            self.lr = args["lr"]
            self.entropy_coef = args["entropy_coef"]
            self.use_max_grad_norm = args["use_max_grad_norm"]
            self.max_grad_norm = args["max_grad_norm"]
            self.actor_optimizer = torch.optim.Adam(
                self.actor.parameters(), lr=self.lr, eps=args["opti_eps"], weight_decay=args["weight_decay"]
            )
        self.num_epochs = 1
        self.num_mini_batch = 1

    # ----------------------------------------------------------------- acting
    def get_actions(
        self,
        obs: ArrayLike,
        rnn_states_actor: ArrayLike,
        masks: ArrayLike,
        available_actions: ArrayLike | None = None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions ``(B, a)``, their log-probs and the next rnn states (torch tensors)."""
        return self.actor(obs, rnn_states_actor, masks, available_actions, deterministic)

    def evaluate_actions(
        self,
        obs: ArrayLike,
        rnn_states_actor: ArrayLike,
        action: ArrayLike,
        masks: ArrayLike,
        available_actions: ArrayLike | None = None,
        active_masks: ArrayLike | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, ActionDistribution]:
        """Log-probs of ``action``, entropy and distribution (see ``StochasticPolicy.evaluate_actions``)."""
        return self.actor.evaluate_actions(obs, rnn_states_actor, action, masks, available_actions, active_masks)

    def act(
        self,
        obs: ArrayLike,
        rnn_states_actor: ArrayLike,
        masks: ArrayLike,
        available_actions: ArrayLike | None = None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions and next rnn states, for evaluation and rendering."""
        actions, _, rnn_states_actor = self.actor(obs, rnn_states_actor, masks, available_actions, deterministic)
        return actions, rnn_states_actor

    # ---------------------------------------------------------------- training
    def train(self, actor_buffer: OnPolicyActorBuffer, advantages: np.ndarray, state_type: str) -> dict[str, float]:
        """Run ``num_epochs`` passes of ``num_mini_batch`` updates over the buffer.

        Args:
            actor_buffer: this agent's rollout (with ``factor`` set for the HA algorithms).
            advantages: ``(T, E, 1)``. "EP": the shared advantages, standardised here over the
                steps where this agent was active; "FP": this agent's slice, already
                standardised by the runner.
            state_type: "EP" or "FP".

        Returns:
            the mean over updates of each of ``train_info_keys``.
        """
        check_state_type(state_type)
        if np.all(actor_buffer.active_masks[:-1] == 0.0):
            return {key: 0.0 for key in self.train_info_keys}
        if state_type == "EP":
            advantages = normalize_advantages(advantages, actor_buffer.active_masks[:-1])

        totals = dict.fromkeys(self.train_info_keys, 0.0)
        num_updates = 0
        for _ in range(self.num_epochs):
            for batch in self._data_generator(actor_buffer, advantages):
                for key, value in self.update(batch).items():
                    totals[key] += float(value)
                num_updates += 1
        return {key: total / num_updates for key, total in totals.items()}

    def update(self, batch: ActorBatch) -> dict[str, float | torch.Tensor]:
        """One update on one mini-batch; returns the values of ``train_info_keys``."""
        raise NotImplementedError

    def _data_generator(self, actor_buffer: OnPolicyActorBuffer, advantages: np.ndarray) -> Iterator[ActorBatch]:
        if self.use_recurrent_policy:
            return actor_buffer.recurrent_generator_actor(advantages, self.num_mini_batch, self.data_chunk_length)
        if self.use_naive_recurrent_policy:
            return actor_buffer.naive_recurrent_generator_actor(advantages, self.num_mini_batch)
        return actor_buffer.feed_forward_generator_actor(advantages, self.num_mini_batch)

    # ------------------------------------------------- pieces of the updates
    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return to_tensor(x, self.device)

    def _factor(self, batch: ActorBatch) -> torch.Tensor:
        """The HA factor ``M`` of the mini-batch, ``(B, 1)``."""
        if batch.factor is None:
            raise RuntimeError(f"{type(self).__name__} needs actor_buffer.update_factor(factor) before train()")
        return self._tensor(batch.factor)

    def _ratio_and_entropy(self, batch: ActorBatch) -> tuple[torch.Tensor, torch.Tensor, ActionDistribution]:
        """Policy ratio ``(B, 1)`` of the stored actions, mean entropy, and the new distribution."""
        log_probs, dist_entropy, dist = self.evaluate_actions(
            batch.obs, batch.rnn_states, batch.actions, batch.masks, batch.available_actions, batch.active_masks
        )
        ratio = aggregate_ratio(log_probs, self._tensor(batch.old_action_log_probs), self.action_aggregation)
        return ratio, dist_entropy, dist

    def _policy_mean(self, x: torch.Tensor, batch: ActorBatch) -> torch.Tensor:
        """Mean over samples, restricted to active ones when ``use_policy_active_masks``."""
        return masked_mean(x, self._tensor(batch.active_masks) if self.use_policy_active_masks else None)

    def _entropy_regularised_step(
        self, policy_loss: torch.Tensor, dist_entropy: torch.Tensor, ratio: torch.Tensor
    ) -> dict[str, float | torch.Tensor]:
        """Minimise ``policy_loss - entropy_coef * entropy`` by one optimiser step.

        The gradient norm is clipped to ``max_grad_norm`` when ``use_max_grad_norm``; the
        pre-clipping norm is reported. Returns the values of ``train_info_keys``.
        """
        self.actor_optimizer.zero_grad()
        loss = policy_loss - self.entropy_coef * dist_entropy
        loss.backward()
        if self.use_max_grad_norm:
            grad_norm = float(nn.utils.clip_grad_norm_(self.actor.parameters(), self.max_grad_norm))
        else:
            grad_norm = get_grad_norm(self.actor.parameters())
        guarded_step(self.actor_optimizer, loss, "actor")
        return {
            "policy_loss": policy_loss.detach(),
            "dist_entropy": dist_entropy.detach(),
            "actor_grad_norm": grad_norm,
            "ratio": ratio.detach().mean(),
        }

    # ------------------------------------------------------------ bookkeeping
    def lr_decay(self, episode: int, episodes: int) -> None:
        """Linearly decay the actor learning rate (no-op without an optimiser, e.g. HATRPO)."""
        if self.actor_optimizer is not None:
            update_linear_schedule(self.actor_optimizer, episode, episodes, self.lr)

    def prep_training(self) -> None:
        """Put the actor in training mode."""
        self.actor.train()

    def prep_rollout(self) -> None:
        """Put the actor in evaluation mode."""
        self.actor.eval()
