"""Shared parts of the off-policy actors (HASAC, HADDPG, HATD3, MADDPG, MATD3) and critics.

The runner owns the agent loop; an actor only knows its own policy and receives the critic and
the other agents' actions as arguments. One actor update (HARL's sequential scheme, Zhong et al.
2024) maximises, for agent ``m`` and the joint action ``a = (a_1, ..., a_n)`` in which the other
agents' entries are fixed tensors chosen by the runner::

    J(theta_m) = E_s [ Q(s, a_1, ..., a_m ~ pi_theta_m(.|o_m), ..., a_n) ]            (DDPG, TD3)
    J(theta_m) = E_s [ Q(s, ...) - alpha_m log pi_theta_m(a_m|o_m) ]                     (SAC)

The HA runner refreshes ``a_m`` from the updated policy before the next agent's turn; the MA
runner keeps the pre-update actions for every agent, which updates all agents simultaneously.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import gymnasium
import numpy as np
import torch
import torch.nn as nn

from harl.utils.finite import guarded_step
from harl.utils.models_tools import masked_mean, to_tensor, update_linear_schedule

Tensor = torch.Tensor


class JointQ(Protocol):
    """What an actor update needs from a critic (every critic in ``harl.algorithms.critics``)."""

    def get_values(self, share_obs: Tensor, joint_actions: Tensor, obs: Sequence[Tensor] | None = None) -> Tensor:
        """``Q(s, a)`` ``(*K, B, 1)`` for critic-format joint actions ``(*K, B, A)`` (``obs``: every
        agent's observations, read by critic_form additive_local)."""
        ...


def default_target_entropy(act_space: gymnasium.Space) -> float:
    """HARL's target entropy for the automatic temperature: ``-dim(A)`` for Box (Haarnoja et al.
    2018), 0 for Discrete."""
    if isinstance(act_space, gymnasium.spaces.Box):
        return -float(np.prod(act_space.shape))
    # HARL writes -0.98 * log(1 / prod(space.shape)) here (98% of the maximum entropy), but a
    # Discrete space's shape is (), so it evaluates to 0 and the temperature only decays; HARL's
    # tuned discrete results were obtained that way, so 0 is kept.
    return 0.0


class Temperature:
    """The entropy temperature ``alpha``: fixed (``alpha``) or learned (``auto_alpha``).

    Learned: ``alpha = exp(log_alpha)``, ``log_alpha`` starts at 0 (HARL) and follows
    ``min_alpha E[-alpha (log pi(a|s) + H_target)]`` (SAC, Haarnoja et al. 2018, eq. 18), which
    raises alpha while the entropy is below ``H_target`` and lowers it while above.

    Args:
        args: keys ``auto_alpha``, ``alpha``, ``alpha_lr``.
        target_entropy: ``H_target``.
        device: where ``log_alpha`` lives.
    """

    def __init__(self, args: dict, target_entropy: float, device: torch.device) -> None:
        self.auto_alpha: bool = args["auto_alpha"]
        self.target_entropy = target_entropy
        if self.auto_alpha:
            self.log_alpha = torch.zeros(1, device=device, requires_grad=True)
            self.optimizer: torch.optim.Optimizer | None = torch.optim.Adam([self.log_alpha], lr=args["alpha_lr"])
        else:
            self.log_alpha = torch.tensor([float(args["alpha"])], device=device).log()
            self.optimizer = None

    @property
    def alpha(self) -> Tensor:
        """``alpha`` as a detached ``(1,)`` tensor."""
        return self.log_alpha.detach().exp()

    def update(self, logp: Tensor) -> dict[str, float]:
        """One gradient step on ``log_alpha`` from log-probs ``(B, 1)`` of fresh samples (no-op if fixed)."""
        if self.optimizer is not None:
            # J(alpha) = E[-alpha (log pi + H_target)], differentiated through log alpha
            loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            self.optimizer.zero_grad()
            loss.backward()
            guarded_step(self.optimizer, loss, "entropy temperature (alpha)")
        return {"alpha": self.alpha.item(), "entropy": -logp.detach().mean().item()}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"log_alpha": self.log_alpha.detach().clone()}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])


class OffPolicyComponent:
    """Bookkeeping shared by off-policy actors and critics.

    Online networks with Polyak-averaged target copies, Adam optimisers with HARL's linear
    learning-rate decay, and checkpoint state. Subclasses list what is checkpointed in
    :meth:`_state_objects`.
    """

    def __init__(self, polyak: float, device: torch.device) -> None:
        self.polyak = polyak
        self.device = torch.device(device)
        self._target_pairs: list[tuple[nn.Module, nn.Module]] = []
        self._lr_schedules: list[tuple[torch.optim.Optimizer, float]] = []

    def as_tensor(self, x: Tensor | np.ndarray | None) -> Tensor | None:
        """``x`` as a float32 tensor on this component's device (``None`` stays ``None``)."""
        return None if x is None else to_tensor(x, self.device)

    def make_target(self, net: nn.Module) -> nn.Module:
        """A frozen copy of ``net`` that :meth:`soft_update` moves toward ``net``."""
        target = copy.deepcopy(net)
        target.requires_grad_(False)
        self._target_pairs.append((target, net))
        return target

    def make_optimizer(self, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
        """An Adam optimiser whose learning rate :meth:`lr_decay` schedules from ``lr``."""
        optimizer = torch.optim.Adam(params, lr=lr)
        self._lr_schedules.append((optimizer, lr))
        return optimizer

    @torch.no_grad()
    def soft_update(self) -> None:
        """Polyak averaging of every target: ``theta' <- (1 - polyak) theta' + polyak theta``."""
        for target, online in self._target_pairs:
            for p_target, p in zip(target.parameters(), online.parameters()):
                p_target.lerp_(p, self.polyak)

    def lr_decay(self, step: int, steps: int) -> None:
        """Linear learning-rate decay toward 0 at ``step == steps`` (HARL's ``update_linear_schedule``)."""
        for optimizer, lr0 in self._lr_schedules:
            update_linear_schedule(optimizer, step, steps, lr0)

    def _state_objects(self) -> dict[str, Any]:
        """Name -> object with ``state_dict``/``load_state_dict`` (networks, optimisers, ...)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume training: networks, targets, optimisers, temperatures."""
        return {name: obj.state_dict() for name, obj in self._state_objects().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        for name, obj in self._state_objects().items():
            obj.load_state_dict(state[name])

    @staticmethod
    def save_weights(save_dir: str, files: dict[str, nn.Module]) -> None:
        """HARL-style weight files: ``torch.save(module.state_dict(), save_dir/name)``."""
        for name, module in files.items():
            torch.save(module.state_dict(), os.path.join(save_dir, name))

    def load_weights(self, model_dir: str, files: dict[str, nn.Module]) -> None:
        """Inverse of :meth:`save_weights`, onto this component's device."""
        for name, module in files.items():
            path = os.path.join(model_dir, name)
            module.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))


class OffPolicyBase(OffPolicyComponent):
    """Base of the off-policy actors. One instance per agent (or one shared with ``share_param``).

    Action formats:

    * env format (rollouts, replay buffer): Box ``(B, a_i)`` float, Discrete ``(B, 1)`` int64;
    * critic format (joint-action input of the critic): Box ``(B, a_i)``, Discrete one-hot
      ``(B, n_i)``; the width ``c_i`` of this is ``action_input_dim(act_space)``.

    Args:
        args: ``{**algo_args["model"], **algo_args["algo"]}``; keys ``lr``, ``polyak``,
            ``use_policy_active_masks`` and the policy network's keys.
        obs_space: Box ``(d_i,)``.
        act_space: Box or Discrete.
        device: where the networks live.
    """

    #: critic updates per actor (and target) update; the runner updates actors and targets when
    #: ``update_count % policy_freq == 0`` (TD3's delayed policy updates).
    policy_freq: int = 1

    def __init__(
        self,
        args: dict,
        obs_space: gymnasium.spaces.Box,
        act_space: gymnasium.Space,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        super().__init__(args["polyak"], device)
        self.use_policy_active_masks: bool = args["use_policy_active_masks"]
        self.actor: nn.Module = self._build_actor(args, obs_space, act_space)
        self.actor_optimizer = self.make_optimizer(self.actor.parameters(), args["lr"])
        self.target_actor: nn.Module | None = None

    # --- per-algorithm policy -------------------------------------------------------------

    def _build_actor(self, args: dict, obs_space: gymnasium.spaces.Box, act_space: gymnasium.Space) -> nn.Module:
        raise NotImplementedError

    def get_actions(
        self, obs: Tensor | np.ndarray, available_actions: Tensor | np.ndarray | None = None, explore: bool = True
    ) -> Tensor:
        """Actions to execute, env format ``(E, a_i)`` or ``(E, 1)``, without gradients.

        Args:
            obs: ``(E, d_i)``.
            available_actions: ``(E, n_i)`` 0/1 mask for Discrete agents, else ``None``.
            explore: add exploration (noise or sampling); ``False`` for evaluation.
        """
        raise NotImplementedError

    def sample(self, obs: Tensor, available_actions: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The current policy's differentiable action, critic format ``(B, c_i)``.

        Returns:
            actions, and ``log pi(a|o)`` ``(B, 1)`` for stochastic policies (``None`` otherwise).
        """
        raise NotImplementedError

    @torch.no_grad()
    def get_target_actions(self, obs: Tensor, available_actions: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Next-state actions for the critic's TD target, critic format, without gradients.

        Deterministic actors use their target network (plus smoothing noise for TD3); HASAC
        samples its current policy and also returns ``log pi`` for the entropy term.
        """
        raise NotImplementedError

    def _objective(self, q: Tensor, logp: Tensor | None) -> Tensor:
        """Per-sample quantity the actor maximises: ``Q`` (deterministic policies)."""
        return q

    def _after_actor_step(self, logp: Tensor | None) -> dict[str, float]:
        """Hook after the policy step (HASAC: temperature); returns diagnostics."""
        return {}

    # --- update -----------------------------------------------------------------------------

    def train(
        self,
        obs: Tensor,
        share_obs: Tensor,
        joint_actions: Sequence[Tensor],
        agent_id: int,
        critic: JointQ,
        available_actions: Tensor | None = None,
        valid_transition: Tensor | None = None,
        all_obs: Sequence[Tensor] | None = None,
    ) -> dict[str, float]:
        """One gradient step of this agent's policy against the centralised critic.

        Args:
            obs: this agent's observations ``(B, d_i)``.
            share_obs: the critic's state, EP ``(B, s)`` or FP ``(B, N, s)``.
            joint_actions: every agent's action, critic format ``(B, c_j)``, detached; the entry
                ``agent_id`` is replaced by this policy's differentiable action.
            agent_id: this agent's slot in ``joint_actions``.
            critic: the centralised critic (only ``get_values`` is used).
            available_actions: ``(B, n_i)`` for Discrete agents.
            valid_transition: ``(B, 1)``, 0 where the agent was already dead (masked out when
                ``use_policy_active_masks``).
            all_obs: every agent's observations ``(B, d_j)``, for critics that read them.

        Returns:
            diagnostics (``actor_loss``, and ``alpha``/``entropy`` for HASAC).
        """
        actions, logp = self.sample(obs, available_actions)
        joint = torch.cat([*joint_actions[:agent_id], actions, *joint_actions[agent_id + 1 :]], dim=-1)
        q = critic.get_values(share_obs, joint, all_obs)
        mask = valid_transition if self.use_policy_active_masks else None
        loss = -masked_mean(self._objective(q, logp), mask)
        self.actor_optimizer.zero_grad()
        # gradients only into this policy: the critic and the other agents stay untouched
        loss.backward(inputs=list(self.actor.parameters()))
        guarded_step(self.actor_optimizer, loss, "actor")
        return {"actor_loss": loss.item(), **self._after_actor_step(logp)}

    # --- checkpoints ------------------------------------------------------------------------

    def _state_objects(self) -> dict[str, Any]:
        objects: dict[str, Any] = {"actor": self.actor, "actor_optimizer": self.actor_optimizer}
        if self.target_actor is not None:
            objects["target_actor"] = self.target_actor
        return objects

    def _weight_files(self, agent_id: int) -> dict[str, nn.Module]:
        files = {f"actor_agent{agent_id}.pt": self.actor}
        if self.target_actor is not None:
            files[f"target_actor_agent{agent_id}.pt"] = self.target_actor
        return files

    def save(self, save_dir: str, agent_id: int) -> None:
        """HARL-style weights: ``actor_agent<i>.pt`` (and ``target_actor_agent<i>.pt``)."""
        self.save_weights(save_dir, self._weight_files(agent_id))

    def restore(self, model_dir: str, agent_id: int) -> None:
        """Load weights written by :meth:`save` (HARL's ``model_dir``)."""
        self.load_weights(model_dir, self._weight_files(agent_id))
