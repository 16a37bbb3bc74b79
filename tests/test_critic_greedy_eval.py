"""benchmarks/critic_greedy_eval.py: the critic's greedy decentralised policy."""

import importlib.util
import pathlib
import sys

import gymnasium
import torch

from harl.models.value_function_models.continuous_q_net import ContinuousQNet

SPEC = importlib.util.spec_from_file_location(
    "critic_greedy_eval", pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "critic_greedy_eval.py"
)
critic_greedy_eval = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = critic_greedy_eval  # the module's dataclass looks itself up there
SPEC.loader.exec_module(critic_greedy_eval)

OBS = [gymnasium.spaces.Box(-1.0, 1.0, (4,)), gymnasium.spaces.Box(-1.0, 1.0, (6,))]
ACTS = [gymnasium.spaces.Discrete(3), gymnasium.spaces.Discrete(5)]


def _additive_local_net() -> ContinuousQNet:
    return ContinuousQNet(
        {"hidden_sizes": [16], "activation_func": "relu", "critic_form": "additive_local"},
        gymnasium.spaces.Box(-1.0, 1.0, (5,)),
        ACTS,
        2,
        obs_spaces=OBS,
    )


def test_greedy_actions_are_the_available_arg_max_of_the_mean_utility():
    torch.manual_seed(0)
    net = _additive_local_net()
    obs = [torch.randn(64, 4), torch.randn(64, 6)]
    available = (torch.rand(64, 5) > 0.4).float()
    available[:, 0] = 1.0  # at least one available action per state
    # agent 1's five utilities, computed by the joint path (all agents' observations at once)
    utilities = torch.stack([head.utilities(obs) for head in net.heads]).mean(0)[:, 3:]
    best = utilities.masked_fill(available == 0, float("-inf")).max(-1, keepdim=True).values
    greedy = critic_greedy_eval.CriticGreedyActor(None, net, 1)
    actions = greedy.get_actions(obs[1].numpy(), available.numpy())
    assert all(available[i, a] == 1 for i, a in enumerate(actions.squeeze(-1).tolist()))
    # the chosen action's utility is the best available one (up to float summation order)
    assert torch.allclose(utilities.gather(-1, actions), best, atol=1e-5)


class _FixedActor:
    """Returns the actions it is given, whatever the observation."""

    def __init__(self, actions):
        self.actions = actions

    def get_actions(self, obs, available_actions=None, explore=False):
        return self.actions


def test_agreement_probe_counts_states_with_a_choice_and_the_utility_given_up():
    torch.manual_seed(1)
    net = _additive_local_net()
    obs = torch.randn(32, 6).numpy()
    available = torch.ones(32, 5)
    available[:8] = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])  # no choice: not counted
    greedy = critic_greedy_eval.CriticGreedyActor(None, net, 1)
    utility = greedy.available_utilities(obs, available.numpy())
    best = utility.argmax(-1, keepdim=True)
    worst = utility.masked_fill(~torch.isfinite(utility), float("inf")).argmin(-1, keepdim=True)

    tally = critic_greedy_eval.Agreement()
    probe = critic_greedy_eval.AgreementProbe(_FixedActor(best), net, 1, tally)
    assert torch.equal(probe.get_actions(obs, available.numpy()), best)  # it acts as the actor
    assert (tally.states, tally.agreeing, tally.regret_share) == (24, 24, 0.0)

    tally = critic_greedy_eval.Agreement()
    critic_greedy_eval.AgreementProbe(_FixedActor(worst), net, 1, tally).get_actions(obs, available.numpy())
    assert (tally.states, tally.agreeing) == (24, 0)
    assert abs(tally.regret_share / 24 - 1.0) < 1e-5  # the worst action gives up the whole range
    assert tally.row().startswith("0.000 (24 states) | 1.00")


def test_agreement_probe_counts_the_states_where_the_heads_arg_maxes_differ():
    torch.manual_seed(2)
    net = _additive_local_net()
    obs = torch.randn(64, 6).numpy()
    available = torch.ones(64, 5).numpy()
    greedy = critic_greedy_eval.CriticGreedyActor(None, net, 1)
    arg_maxes = greedy.head_utilities(obs, available).argmax(-1)
    differ = arg_maxes[0] != arg_maxes[1]
    assert 0 < int(differ.sum()) < 64  # both kinds of state occur: the count can be wrong
    tally = critic_greedy_eval.Agreement()
    critic_greedy_eval.AgreementProbe(_FixedActor(arg_maxes[0].unsqueeze(-1)), net, 1, tally).get_actions(
        obs, available
    )
    mean_best = greedy.available_utilities(obs, available).argmax(-1)
    assert tally.heads_differ == int(differ.sum())
    assert tally.agreeing_where_heads_differ == int((differ & (arg_maxes[0] == mean_best)).sum())
