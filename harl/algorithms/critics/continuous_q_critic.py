"""Centralised Q critic over the joint action (HADDPG, MADDPG) and the base of the twin critics.

The critic is agent-agnostic: the runner computes the next-state actions of every agent (target
policies, or current policies for HASAC) and hands them over; the critic only sees joint actions.

State types (HARL): ``EP`` -- one environment-provided state per step, ``share_obs (B, s)`` and
TD quantities ``(B, 1)``; ``FP`` -- one state per agent, ``share_obs (B, N, s)``, TD quantities
``(B, N, 1)``, each agent's state valued with the same joint action.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium
import torch

from harl.algorithms.actors.off_policy_base import OffPolicyComponent
from harl.common.buffers.off_policy_buffer_base import OffPolicyBatch
from harl.common.valuenorm import ValueNorm
from harl.envs.base import check_state_type
from harl.models.value_function_models.continuous_q_net import ContinuousQNet
from harl.utils.finite import guarded_step
from harl.utils.models_tools import huber_loss, masked_mean, mse_loss

Tensor = torch.Tensor


class ContinuousQCritic(OffPolicyComponent):
    """One Q function ``Q(s, a_1, ..., a_n)`` and its Polyak target.

    Args:
        args: ``{**algo_args["train"], **algo_args["model"], **algo_args["algo"]}``; keys
            ``critic_lr``, ``polyak``, ``use_proper_time_limits``, ``use_huber_loss``,
            ``huber_delta``, ``use_policy_active_masks``, ``use_valuenorm`` and the Q network's.
        share_obs_space: Box ``(s,)``.
        act_spaces: every agent's action space (Box or Discrete, may differ between agents).
        num_agents: ``N`` (kept for HARL's signature; the shapes carry it).
        state_type: ``"EP"`` or ``"FP"``.
        device: where the networks live.
        obs_spaces: every agent's observation space (critic_form ``additive_local`` reads them;
            its evaluations then take the observations as ``obs``).
    """

    n_heads = 1

    def __init__(
        self,
        args: dict,
        share_obs_space: gymnasium.spaces.Box,
        act_spaces: Sequence[gymnasium.Space],
        num_agents: int,
        state_type: str,
        device: torch.device = torch.device("cpu"),
        obs_spaces: Sequence[gymnasium.spaces.Box] | None = None,
    ) -> None:
        super().__init__(args["polyak"], device)
        check_state_type(state_type)
        self.state_type = state_type
        self.use_proper_time_limits: bool = args["use_proper_time_limits"]
        self.use_huber_loss: bool = args["use_huber_loss"]
        self.huber_delta: float = args["huber_delta"]
        self.use_policy_active_masks: bool = args["use_policy_active_masks"]
        self.critic = ContinuousQNet(args, share_obs_space, act_spaces, self.n_heads, self.device, obs_spaces)
        self.target_critic = self.make_target(self.critic)
        self.critic_optimizer = self.make_optimizer(self.critic.parameters(), args["critic_lr"])
        self.value_normalizer = ValueNorm(1, device=self.device) if args["use_valuenorm"] else None

    # --- evaluation -------------------------------------------------------------------------

    def encode_actions(self, actions: Sequence[Tensor]) -> list[Tensor]:
        """Per-agent critic-format actions ``(..., c_i)`` from env-format ones (buffer): Discrete
        indices become one-hot. The MA runner uses them as the other agents' fixed actions."""
        return self.critic.encode_actions(actions)

    @property
    def needs_obs(self) -> bool:
        """Whether evaluations need the agents' observations (``obs``): critic_form additive_local."""
        return self.critic.needs_obs

    def _heads_scorer(
        self, net: ContinuousQNet, share_obs: Tensor, obs: Sequence[Tensor] | None = None
    ) -> Callable[[Tensor], Tensor]:
        """Every head's Q at fixed states as a function of joint actions ``(*K, B, A)`` ->
        ``(*K, B, H)`` for EP, ``(*K, B, N, H)`` for FP (every agent's state, same joint action).
        ``obs`` per agent ``(B, d_i)``, read only by critics that :attr:`needs_obs`."""
        obs = (
            [torch.as_tensor(o, dtype=torch.float32, device=self.device) for o in obs]
            if self.needs_obs and obs is not None
            else None
        )
        if self.state_type == "EP":
            return net.scorer(share_obs, obs)
        score = net.scorer(share_obs, None if obs is None else [o.unsqueeze(-2) for o in obs])
        return lambda joint_actions: score(joint_actions.unsqueeze(-2))

    def _q_heads(
        self, net: ContinuousQNet, share_obs: Tensor, joint_actions: Tensor, obs: Sequence[Tensor] | None = None
    ) -> Tensor:
        """:meth:`_heads_scorer` at ``joint_actions``."""
        return self._heads_scorer(net, share_obs, obs)(joint_actions)

    def _policy_value(self, q_heads: Tensor) -> Tensor:
        """The head(s) that actors maximise: the first one (DDPG, TD3)."""
        return q_heads[..., :1]

    def get_values(self, share_obs: Tensor, joint_actions: Tensor, obs: Sequence[Tensor] | None = None) -> Tensor:
        """Q-values for actor updates (differentiable w.r.t. ``joint_actions``).

        Args:
            share_obs: EP ``(B, s)``, FP ``(B, N, s)``.
            joint_actions: ``(*K, B, A)`` critic format, any number ``K`` of leading candidate
                dimensions (e.g. many candidate joint actions per state for HAQO).
            obs: per agent ``(B, d_i)`` (read only by critics that :attr:`needs_obs`).

        Returns:
            ``(*K, B, 1)``; with FP the mean over the ``N`` agents' states, which is HARL's actor
            loss over the ``N * B`` tiled samples. Normalised values if ``use_valuenorm`` (HARL).
        """
        q = self._policy_value(self._q_heads(self.critic, share_obs, joint_actions, obs))
        return q.mean(-2) if self.state_type == "FP" else q

    def min_q_fn(
        self, share_obs: Tensor, obs: Sequence[Tensor] | None = None, target: bool = False, combine: str = "min"
    ) -> Callable[[Tensor], Tensor]:
        """:meth:`min_q` at fixed states as a function of joint actions ``(*K, B, A)`` ->
        ``(*K, B, 1)``; what the states alone determine (``additive_local``'s values and
        utilities) is computed once here, not at every call. ``combine="mean"`` averages the
        heads instead of taking their minimum (HAQO's ``actor_q``)."""
        if combine not in ("min", "mean"):
            raise ValueError(f"combine must be 'min' or 'mean', not {combine!r}")
        score = self._heads_scorer(self.target_critic if target else self.critic, share_obs, obs)

        def q_fn(joint_actions: Tensor) -> Tensor:
            heads = score(joint_actions)
            q = heads.min(-1, keepdim=True).values if combine == "min" else heads.mean(-1, keepdim=True)
            return q.mean(-2) if self.state_type == "FP" else q

        return q_fn

    def min_q(
        self, share_obs: Tensor, joint_actions: Tensor, target: bool = False, obs: Sequence[Tensor] | None = None
    ) -> Tensor:
        """``min_j Q_j(s, a)`` over the heads of the online (or target) critic, ``(*K, B, 1)``,
        FP averaged over the agents' states like :meth:`get_values`. HAQO scores its candidate
        joint actions with it (behaviour, TD-target and training candidates); ``obs`` as in
        :meth:`get_values`."""
        return self.min_q_fn(share_obs, obs, target)(joint_actions)

    # --- update -----------------------------------------------------------------------------

    def _next_state_value(self, next_q: Tensor, next_logps: Sequence[Tensor] | None) -> Tensor:
        """``V(s') = Q'(s', a')`` (the soft critic subtracts the entropy term)."""
        return next_q

    def _td_loss(self, error: Tensor) -> Tensor:
        return huber_loss(error, self.huber_delta) if self.use_huber_loss else mse_loss(error)

    @torch.no_grad()
    def td_target(
        self,
        batch: OffPolicyBatch,
        next_actions: Sequence[Tensor],
        next_logps: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """The n-step TD target, EP ``(B, 1)`` or FP ``(B, N, 1)``, in raw (not normalised) units.

        ``y = R^(n) + gamma^m (1 - d_m) V(s_m)`` with ``m`` the steps the buffer used,
        ``d_m = terms`` (``dones`` if not ``use_proper_time_limits``) and
        ``V(s') = min_j Q'_j(s', a')`` over the target heads (clipped double Q).

        Args:
            batch: a sample from the replay buffer, as tensors on this critic's device.
            next_actions: per agent ``(B, c_i)`` critic format, the actions at
                ``batch.next_obs`` (target policies; smoothed for TD3; current policy for SAC).
            next_logps: per agent ``(B, 1)`` ``log pi(a'|o')``, used by the soft critic only.
        """
        next_q = self._q_heads(
            self.target_critic, batch.next_share_obs, torch.cat(list(next_actions), -1), batch.next_obs
        )
        next_q = next_q.min(-1, keepdim=True).values
        if self.value_normalizer is not None:
            next_q = self._apply_value_norm(self.value_normalizer.denormalize, next_q)
        next_v = self._next_state_value(next_q, next_logps)
        stop = batch.terms if self.use_proper_time_limits else batch.dones
        return batch.rewards + batch.gammas * (1.0 - stop) * next_v

    def train(
        self,
        batch: OffPolicyBatch,
        next_actions: Sequence[Tensor],
        next_logps: Sequence[Tensor] | None = None,
    ) -> dict[str, float]:
        """One gradient step of every head on the n-step TD error (arguments of :meth:`td_target`).

        Returns:
            diagnostics ``critic_loss``, ``q_mean``.
        """
        q_target = self.td_target(batch, next_actions, next_logps)
        if self.value_normalizer is not None:
            self.value_normalizer.update(q_target.reshape(-1, 1))
            q_target = self._apply_value_norm(self.value_normalizer.normalize, q_target)

        q = self._q_heads(self.critic, batch.share_obs, torch.cat(self.encode_actions(batch.actions), -1), batch.obs)
        mask = batch.valid_transitions if self.state_type == "FP" and self.use_policy_active_masks else None
        # sum over heads of each head's (masked) mean loss
        loss = masked_mean(self._td_loss(q - q_target), mask) * self.n_heads
        self.critic_optimizer.zero_grad()
        loss.backward()
        guarded_step(self.critic_optimizer, loss, "critic")
        return {"critic_loss": loss.item(), "q_mean": q.detach().mean().item()}

    def _apply_value_norm(self, fn: Any, values: Tensor) -> Tensor:
        """``fn`` (ValueNorm's normalize/denormalize, numpy or tensor output) on ``(M, 1)`` rows."""
        out = fn(values.reshape(-1, 1))
        return torch.as_tensor(out, dtype=torch.float32, device=self.device).reshape(values.shape)

    # --- checkpoints ------------------------------------------------------------------------

    def _state_objects(self) -> dict[str, Any]:
        objects: dict[str, Any] = {
            "critic": self.critic,
            "target_critic": self.target_critic,
            "critic_optimizer": self.critic_optimizer,
        }
        if self.value_normalizer is not None:
            objects["value_normalizer"] = self.value_normalizer
        return objects

    def _weight_files(self) -> dict[str, Any]:
        files: dict[str, Any] = {"critic_agent.pt": self.critic, "target_critic_agent.pt": self.target_critic}
        if self.value_normalizer is not None:
            files["value_normalizer.pt"] = self.value_normalizer
        return files

    def save(self, save_dir: str) -> None:
        """HARL-style weights: ``critic_agent.pt``, ``target_critic_agent.pt``, ``value_normalizer.pt``."""
        self.save_weights(save_dir, self._weight_files())

    def restore(self, model_dir: str) -> None:
        """Load weights written by :meth:`save` (HARL's ``model_dir``)."""
        self.load_weights(model_dir, self._weight_files())
