"""Several agents' policies acting in one batched call give each policy's own actions,
log-probabilities and recurrent states."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

from harl.models.policy_models.stacked_stochastic_policy import StackedStochasticPolicy
from harl.models.policy_models.stochastic_policy import StochasticPolicy

ARGS = dict(
    hidden_sizes=[32, 32],
    activation_func="relu",
    initialization_method="orthogonal_",
    use_feature_normalization=True,
    gain=0.01,
    use_naive_recurrent_policy=False,
    use_policy_active_masks=True,
    std_x_coef=1.0,
    std_y_coef=0.5,
)
OBS = gymnasium.spaces.Box(-np.inf, np.inf, (12,))
G, B = 3, 6


def make_policies(space, recurrent: bool) -> list[StochasticPolicy]:
    torch.manual_seed(0)
    policies = [
        StochasticPolicy({**ARGS, "use_recurrent_policy": recurrent, "recurrent_n": 2}, OBS, space) for _ in range(G)
    ]
    with torch.no_grad():  # distinct, not near-uniform policies
        for policy in policies:
            for p in policy.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return policies


def inputs(space):
    obs, hidden = torch.randn(G, B, 12), torch.randn(G, B, 2, 32)
    masks = torch.ones(G, B, 1)
    masks[:, :2] = 0.0  # episodes restarting here reset the hidden state
    avail = None
    if isinstance(space, gymnasium.spaces.Discrete):
        avail = (torch.rand(G, B, space.n) > 0.4).float()
        avail[..., 0] = 1.0
    return obs, hidden, masks, avail


@pytest.mark.parametrize(
    "space", [gymnasium.spaces.Discrete(7), gymnasium.spaces.Box(-1, 1, (3,))], ids=["discrete", "box"]
)
@pytest.mark.parametrize("recurrent", [True, False])
def test_stacked_acting_equals_each_policy(space, recurrent):
    policies = make_policies(space, recurrent)
    stacked = StackedStochasticPolicy(policies)
    obs, hidden, masks, avail = inputs(space)
    actions, log_probs, next_hidden = stacked(obs, hidden, masks, avail, deterministic=True)
    with torch.no_grad():
        for g, policy in enumerate(policies):
            a, lp, h = policy(obs[g], hidden[g], masks[g], None if avail is None else avail[g], deterministic=True)
            torch.testing.assert_close(actions[g].float(), a.float())
            torch.testing.assert_close(log_probs[g], lp, atol=1e-5, rtol=1e-5)
            if recurrent:
                torch.testing.assert_close(next_hidden[g], h, atol=1e-5, rtol=1e-5)
    # sampled actions: available ones, with each policy's own log-probabilities
    actions, log_probs, _ = stacked(obs, hidden, masks, avail, deterministic=False)
    with torch.no_grad():
        for g, policy in enumerate(policies):
            # one step of B sequences starting from the given hidden states
            lp, _, _ = policy.evaluate_actions(
                obs[g], hidden[g], actions[g], masks[g], None if avail is None else avail[g]
            )
            torch.testing.assert_close(log_probs[g], lp, atol=1e-5, rtol=1e-5)
            if avail is not None:
                assert torch.all(avail[g].gather(-1, actions[g].long()) == 1)


def test_policies_of_different_structure_are_refused():
    first = make_policies(gymnasium.spaces.Discrete(7), recurrent=False)[0]
    other = StochasticPolicy(
        {**ARGS, "use_recurrent_policy": False, "recurrent_n": 1}, OBS, gymnasium.spaces.Discrete(5)
    )
    with pytest.raises(ValueError, match="identical structure"):
        StackedStochasticPolicy([first, other])
