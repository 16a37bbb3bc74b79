"""QMIX and VDN: value decomposition with recurrent agent Q networks (Rashid et al. 2018;
Sunehag et al. 2018), as pymarl2's fine-tuned QMIX runs it, written for this package.

One agent network shared by every agent (input: observation, last action, agent id), a mixer
(:mod:`harl.models.value_function_models.mixers`) and target copies of both. An update, on ``B``
whole episodes:

    Q_i(o^i_t, .) = agent_net(history of agent i up to t)
    Q_tot(t)      = mixer(Q_i(o^i_t, a^i_t) for all i, s_t)
    a*_i(t+1)     = argmax over available a of Q_i(o^i_{t+1}, a)          (double Q)
    T(t+1)        = target_mixer(target_Q_i(o^i_{t+1}, a*_i), s_{t+1})
    G_t           = r_t + gamma (1 - term_t) ((1 - lambda) T(t+1) + lambda G_{t+1})   (TD(lambda);
                    the last step of an episode uses G_{t+1} = T(t+1); lambda = 0: one-step)
    L             = sum over real transitions (Q_tot(t) - G_t)^2 / their number

then one clipped Adam step and, every ``target_update_interval`` updates, the targets move by
``polyak`` (1: a copy).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from harl.common.buffers.episode_buffer import EpisodeBatch
from harl.models.value_function_models.mixers import MIXER_REGISTRY
from harl.models.value_function_models.recurrent_q_net import RecurrentQNet
from harl.utils.errors import ConfigError
from harl.utils.finite import guarded_step

Tensor = torch.Tensor


def masked_argmax(q: Tensor, available: Tensor) -> Tensor:
    """Arg-max of ``q (..., n)`` over the available actions (``available`` bool ``(..., n)``)."""
    return q.masked_fill(~available, -torch.inf).argmax(-1)


def td_lambda_targets(
    reward: Tensor, terminated: Tensor, mask: Tensor, next_values: Tensor, gamma: float, td_lambda: float
) -> Tensor:
    """``G_t`` of the module doc for padded episodes, all ``(B, T)``; ``next_values[:, t]`` is
    ``T(t+1)``. Padded steps get 0."""
    not_done = 1.0 - terminated
    if td_lambda == 0.0:
        return (reward + gamma * not_done * next_values) * mask
    targets = torch.zeros_like(reward)
    steps = reward.shape[1]
    for t in range(steps - 1, -1, -1):
        # G_{t+1} where step t+1 is real, else (the episode's last step) T(t+1)
        later = (
            next_values[:, t]
            if t + 1 == steps
            else torch.where(mask[:, t + 1] > 0, targets[:, t + 1], next_values[:, t])
        )
        targets[:, t] = reward[:, t] + gamma * not_done[:, t] * (
            (1.0 - td_lambda) * next_values[:, t] + td_lambda * later
        )
    return targets * mask


class QMIX:
    """The learner and the acting policy of QMIX (``mixer: qmix``) and VDN (``mixer: vdn``).

    Args:
        args: the run's flat config; keys ``mixer``, ``hidden_sizes``, ``activation_func``,
            ``initialization_method``, ``use_feature_normalization``, ``obs_last_action``,
            ``obs_agent_id``, ``lr``, ``gamma``, ``td_lambda``, ``double_q``, ``max_grad_norm``,
            ``target_update_interval``, ``polyak`` and the mixer's keys.
        n_agents: ``N``.
        obs_dim: the (padded) observation size ``d``.
        n_actions: the (largest) action count ``n``.
        state_dim: the global state size ``s``.
        device: where the networks live.
    """

    def __init__(
        self,
        args: dict,
        n_agents: int,
        obs_dim: int,
        n_actions: int,
        state_dim: int,
        device: torch.device | str = torch.device("cpu"),
    ) -> None:
        if args["mixer"] not in MIXER_REGISTRY:
            raise ConfigError(f"mixer must be one of {sorted(MIXER_REGISTRY)}, not {args['mixer']!r}")
        self.device = torch.device(device)
        self.n_agents, self.n_actions = n_agents, n_actions
        self.obs_last_action = bool(args["obs_last_action"])
        self.obs_agent_id = bool(args["obs_agent_id"])
        input_dim = obs_dim + n_actions * self.obs_last_action + n_agents * self.obs_agent_id
        self.agent_net = RecurrentQNet(
            input_dim,
            n_actions,
            list(args["hidden_sizes"]),
            args["activation_func"],
            args["initialization_method"],
            bool(args["use_feature_normalization"]),
        ).to(self.device)
        self.mixer = MIXER_REGISTRY[args["mixer"]](n_agents, state_dim, args).to(self.device)
        self.target_agent_net = copy.deepcopy(self.agent_net)
        self.target_mixer = copy.deepcopy(self.mixer)
        for p in [*self.target_agent_net.parameters(), *self.target_mixer.parameters()]:
            p.requires_grad_(False)
        self.params = [*self.agent_net.parameters(), *self.mixer.parameters()]
        self.lr = float(args["lr"])
        self.optimizer = torch.optim.Adam(self.params, lr=self.lr)
        self.gamma, self.td_lambda = float(args["gamma"]), float(args["td_lambda"])
        self.double_q = bool(args["double_q"])
        self.max_grad_norm = float(args["max_grad_norm"])
        self.target_update_interval = int(args["target_update_interval"])
        self.polyak = float(args["polyak"])
        self.updates = 0
        self.agent_ids = torch.eye(n_agents, device=self.device)

    # ----------------------------------------------------------------- inputs
    def agent_inputs(self, obs: Tensor, last_actions: Tensor) -> Tensor:
        """``obs (..., N, d)`` and ``last_actions (..., N)`` (-1: none yet) -> ``(..., N, in)``."""
        parts = [obs]
        if self.obs_last_action:
            parts.append(
                F.one_hot(last_actions.clamp_min(0), self.n_actions).to(obs.dtype)
                * (last_actions >= 0).unsqueeze(-1).to(obs.dtype)
            )
        if self.obs_agent_id:
            parts.append(self.agent_ids.expand(*obs.shape[:-1], self.n_agents))
        return torch.cat(parts, dim=-1)

    # ----------------------------------------------------------------- acting
    def initial_state(self, n_envs: int) -> Tensor:
        """Zero hidden states of every agent of ``n_envs`` environments, ``(n_envs * N, H)``."""
        return self.agent_net.initial_state(n_envs * self.n_agents, self.device)

    @torch.no_grad()
    def act(
        self, obs: Tensor, available: Tensor, last_actions: Tensor, hidden: Tensor, epsilon: float
    ) -> tuple[Tensor, Tensor]:
        """Epsilon-greedy actions over the available ones.

        Args:
            obs: ``(E, N, d)``; available: ``(E, N, n)`` bool; last_actions: ``(E, N)`` (-1 none);
            hidden: ``(E * N, H)``; epsilon: probability of a uniformly random available action.

        Returns:
            actions ``(E, N)`` int64 and the next hidden states.
        """
        E = obs.shape[0]
        q, hidden = self.agent_net.step(self.agent_inputs(obs, last_actions).reshape(E * self.n_agents, -1), hidden)
        greedy = masked_argmax(q.view(E, self.n_agents, -1), available)
        if epsilon <= 0.0:
            return greedy, hidden
        # a uniform available action: the arg-max of uniform scores over the available ones
        random = masked_argmax(torch.rand(available.shape, device=self.device), available)
        explore = torch.rand(greedy.shape, device=self.device) < epsilon
        return torch.where(explore, random, greedy), hidden

    # ----------------------------------------------------------------- learning
    def _sequence_q(self, net: RecurrentQNet, batch: EpisodeBatch) -> Tensor:
        """Q of every agent, step and action over whole episodes: ``(B, T+1, N, n)``."""
        B, rows = batch.actions.shape[:2]
        last = torch.cat([torch.full_like(batch.actions[:, :1], -1), batch.actions[:, :-1]], dim=1)
        inputs = self.agent_inputs(batch.obs, last)  # (B, T+1, N, in)
        inputs = inputs.permute(0, 2, 1, 3).reshape(B * self.n_agents, rows, -1)
        return net(inputs).view(B, self.n_agents, rows, -1).permute(0, 2, 1, 3)

    def train(self, batch: EpisodeBatch) -> dict[str, float]:
        """One update on ``B`` episodes (module doc); returns diagnostics."""
        q = self._sequence_q(self.agent_net, batch)
        chosen = q[:, :-1].gather(-1, batch.actions[:, :-1].unsqueeze(-1)).squeeze(-1)  # (B, T, N)
        with torch.no_grad():
            target_q = self._sequence_q(self.target_agent_net, batch)[:, 1:]
            next_available = batch.available[:, 1:]
            best = masked_argmax(q.detach()[:, 1:] if self.double_q else target_q, next_available)
            next_q = target_q.gather(-1, best.unsqueeze(-1)).squeeze(-1)  # (B, T, N)
            next_values = self.target_mixer(next_q, batch.state[:, 1:]).squeeze(-1)
            targets = td_lambda_targets(
                batch.reward, batch.terminated, batch.mask, next_values, self.gamma, self.td_lambda
            )
        q_tot = self.mixer(chosen, batch.state[:, :-1]).squeeze(-1)  # (B, T)
        n_real = batch.mask.sum().clamp_min(1.0)
        td_error = (q_tot - targets) * batch.mask
        loss = td_error.pow(2).sum() / n_real

        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        guarded_step(self.optimizer, loss, "QMIX agent network and mixer")
        self.updates += 1
        if self.updates % self.target_update_interval == 0:
            self._update_targets()
        return {
            "loss": loss.item(),
            "q_taken_mean": ((q_tot * batch.mask).sum() / n_real).item(),
            "target_mean": ((targets * batch.mask).sum() / n_real).item(),
            "td_error_abs": (td_error.abs().sum() / n_real).item(),
            "grad_norm": grad_norm.item(),
        }

    @torch.no_grad()
    def _update_targets(self) -> None:
        for net, target in ((self.agent_net, self.target_agent_net), (self.mixer, self.target_mixer)):
            for p, tp in zip(net.parameters(), target.parameters()):
                tp.lerp_(p, self.polyak)

    def lr_decay(self, step: int, steps: int) -> None:
        """Learning rate decayed linearly to 0 over ``steps`` (``use_linear_lr_decay``)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * (1.0 - step / float(steps))

    # ----------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "agent_net": self.agent_net.state_dict(),
            "mixer": self.mixer.state_dict(),
            "target_agent_net": self.target_agent_net.state_dict(),
            "target_mixer": self.target_mixer.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent_net.load_state_dict(state["agent_net"])
        self.mixer.load_state_dict(state["mixer"])
        self.target_agent_net.load_state_dict(state["target_agent_net"])
        self.target_mixer.load_state_dict(state["target_mixer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
