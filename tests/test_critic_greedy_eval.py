"""benchmarks/critic_greedy_eval.py: the critic's greedy decentralised policy."""

import importlib.util
import pathlib

import gymnasium
import torch

from harl.models.value_function_models.continuous_q_net import ContinuousQNet

SPEC = importlib.util.spec_from_file_location(
    "critic_greedy_eval", pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "critic_greedy_eval.py"
)
critic_greedy_eval = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(critic_greedy_eval)

OBS = [gymnasium.spaces.Box(-1.0, 1.0, (4,)), gymnasium.spaces.Box(-1.0, 1.0, (6,))]
ACTS = [gymnasium.spaces.Discrete(3), gymnasium.spaces.Discrete(5)]


def test_greedy_actions_are_the_available_arg_max_of_the_mean_utility():
    torch.manual_seed(0)
    net = ContinuousQNet(
        {"hidden_sizes": [16], "activation_func": "relu", "critic_form": "additive_local"},
        gymnasium.spaces.Box(-1.0, 1.0, (5,)),
        ACTS,
        2,
        obs_spaces=OBS,
    )
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
