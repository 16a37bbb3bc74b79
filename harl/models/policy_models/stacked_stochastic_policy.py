"""The acting step of several agents' :class:`StochasticPolicy` networks as one batched call.

A rollout step of ``G`` agents with separate policies of identical structure would cost ``G``
sequences of small network calls; here each layer is one batched call over the ``G`` stacked
parameter sets (:class:`harl.models.base.stacked.StackedLayers`), the GRU included. The
distributions are the policies' own; only the order in which random numbers are drawn differs
from calling the policies one by one.
"""

from __future__ import annotations

from typing import Sequence

import torch

from harl.models.base.distributions import UNAVAILABLE_LOGIT, Categorical, FixedNormal
from harl.models.base.stacked import StackedLayers
from harl.models.policy_models.stochastic_policy import StochasticPolicy

Tensor = torch.Tensor


class StackedStochasticPolicy:
    """``G`` policies with equal :meth:`StochasticPolicy.stack_key` acting as one.

    It holds stacked copies of the weights: build it again after the policies change (a
    training phase, a checkpoint load). Inputs and outputs carry ``G`` first.
    """

    def __init__(self, policies: Sequence[StochasticPolicy]) -> None:
        first = policies[0]
        if any(p.stack_key() != first.stack_key() for p in policies):
            raise ValueError("StackedStochasticPolicy needs policies of identical structure (equal stack_key())")
        with torch.no_grad():
            self.base = StackedLayers([p.base.layers() for p in policies])
            self.use_rnn = first.use_rnn
            if self.use_rnn:
                grus = [p.rnn.rnn for p in policies]

                def stack(name: str) -> Tensor:
                    return torch.stack([getattr(gru, name) for gru in grus])

                # per GRU layer: input and hidden weights (G, in, 3H) and biases (G, 1, 3H)
                self.gru_layers = [
                    (
                        stack(f"weight_ih_l{k}").transpose(1, 2),
                        stack(f"bias_ih_l{k}").unsqueeze(1),
                        stack(f"weight_hh_l{k}").transpose(1, 2),
                        stack(f"bias_hh_l{k}").unsqueeze(1),
                    )
                    for k in range(first.rnn.recurrent_n)
                ]
                self.rnn_norm = StackedLayers([[p.rnn.norm] for p in policies])
            heads = [p.act.action_out for p in policies]
            self.discrete = isinstance(heads[0], Categorical)
            if self.discrete:
                self.head = StackedLayers([[h.linear] for h in heads])
            else:
                self.head = StackedLayers([[h.fc_mean] for h in heads])
                self.std = torch.stack([h.std() for h in heads]).unsqueeze(1)  # (G, 1, a)

    def _gru(self, x: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """One step of the stacked GRUs: ``x (G, B, in)``, ``hidden (G, B, R, H)``."""
        new_hidden = []
        for k, (w_ih, b_ih, w_hh, b_hh) in enumerate(self.gru_layers):
            h = hidden[:, :, k]
            in_r, in_z, in_n = torch.baddbmm(b_ih, x, w_ih).chunk(3, dim=-1)
            h_r, h_z, h_n = torch.baddbmm(b_hh, h, w_hh).chunk(3, dim=-1)
            reset = torch.sigmoid(in_r + h_r)
            update = torch.sigmoid(in_z + h_z)
            candidate = torch.tanh(in_n + reset * h_n)
            x = candidate + update * (h - candidate)  # (1 - z) n + z h, torch.nn.GRU's update
            new_hidden.append(x)
        return x, torch.stack(new_hidden, dim=2)

    @torch.no_grad()
    def __call__(
        self,
        obs: Tensor,
        rnn_states: Tensor,
        masks: Tensor,
        available_actions: Tensor | None = None,
        deterministic: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Act for one step: ``obs (G, B, d)``, ``rnn_states (G, B, R, H)``, ``masks (G, B, 1)``,
        ``available_actions (G, B, n)`` or None; returns actions, log-probs and rnn states with
        the shapes of :meth:`StochasticPolicy.forward` behind ``G``."""
        x = self.base(obs)
        if self.use_rnn:
            x, rnn_states = self._gru(x, rnn_states * masks.unsqueeze(-1))
            x = self.rnn_norm(x)
        if self.discrete:
            # FixedCategorical's sampling and log-probabilities, without building a distribution
            # object per step (its argument checks cost more than the arithmetic here)
            logits = self.head(x)
            if available_actions is not None:
                logits = logits.masked_fill(available_actions == 0, UNAVAILABLE_LOGIT)
            log_probs = torch.log_softmax(logits, dim=-1)
            if deterministic:
                actions = log_probs.argmax(dim=-1, keepdim=True)
            else:
                actions = torch.multinomial(log_probs.exp().flatten(0, -2), 1).view(*log_probs.shape[:-1], 1)
            return actions, log_probs.gather(-1, actions), rnn_states
        mean = self.head(x)
        dist = FixedNormal(mean, self.std.expand_as(mean))
        actions = dist.mode() if deterministic else dist.sample()
        return actions, dist.log_probs(actions), rnn_states
