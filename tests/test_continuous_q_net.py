"""ContinuousQNet's critic forms (model key ``critic_form``)."""

import gymnasium
import pytest
import torch

from harl.models.value_function_models.continuous_q_net import ContinuousQNet
from harl.utils.errors import ConfigError

SHARE = gymnasium.spaces.Box(-1.0, 1.0, (5,))
DISCRETE = [gymnasium.spaces.Discrete(3), gymnasium.spaces.Discrete(4)]
# observation widths differ between the agents: the shared utility MLP reads them zero-padded
OBS = [gymnasium.spaces.Box(-1.0, 1.0, (4,)), gymnasium.spaces.Box(-1.0, 1.0, (6,))]


def make_net(form: str, act_spaces=DISCRETE, n_heads: int = 2) -> ContinuousQNet:
    torch.manual_seed(0)
    return ContinuousQNet(
        {"hidden_sizes": [16, 16], "activation_func": "relu", "critic_form": form},
        SHARE,
        act_spaces,
        n_heads,
        obs_spaces=OBS,
    )


def joint(net: ContinuousQNet, a0: int, a1: int) -> torch.Tensor:
    return torch.cat(net.encode_actions([torch.tensor([[a0]]), torch.tensor([[a1]])]), -1)


@pytest.mark.parametrize("form", ["joint", "additive", "joint_additive"])
def test_forms_broadcast_states_against_candidates(form):
    net = make_net(form)
    states, candidates = torch.randn(6, 5), torch.randn(4, 1, 7)
    out = net(states, candidates)
    assert out.shape == (4, 6, 2)
    assert torch.allclose(out[2, 3], net(states[3], candidates[2, 0]), atol=1e-6)


def test_local_form_broadcasts_observations_against_candidates():
    net = make_net("additive_local")
    states, candidates = torch.randn(6, 5), torch.randn(4, 1, 7)
    obs = [torch.randn(6, 4), torch.randn(6, 6)]
    out = net(states, candidates, obs)
    assert out.shape == (4, 6, 2)
    assert torch.allclose(out[2, 3], net(states[3], candidates[2, 0], [o[3] for o in obs]), atol=1e-6)
    with pytest.raises(ValueError, match="pass obs"):
        net(states, candidates)


def test_local_form_ranks_an_agents_actions_by_its_own_observation():
    """v(s) + sum_i u(o_i, i)[a_i]: agent 0's advantage profile depends neither on agent 1's action
    nor on agent 1's observation, and it does change with agent 0's own observation."""
    net = make_net("additive_local")
    s = torch.randn(1, 5)

    def profile(o0, o1, a1):
        q = torch.cat([net(s, joint(net, a0, a1), [o0, o1]) for a0 in range(3)])
        return q - q[0]

    o0, o1 = torch.randn(1, 4), torch.randn(1, 6)
    base = profile(o0, o1, 0)
    assert torch.allclose(profile(o0, o1, 3), base, atol=1e-6)
    assert torch.allclose(profile(o0, torch.randn(1, 6), 2), base, atol=1e-6)
    assert not torch.allclose(profile(torch.randn(1, 4), o1, 0), base, atol=1e-4)


def test_additive_form_separates_the_agents():
    """Q(s, a) = v(s) + sum_i u_i(s)[a_i]: agent 0's advantage profile does not depend on agent 1's action."""
    net = make_net("additive")
    s = torch.randn(1, 5)
    profile = [torch.cat([net(s, joint(net, a0, a1)) for a0 in range(3)]) for a1 in range(4)]
    gaps = [p - p[0] for p in profile]
    for g in gaps[1:]:
        assert torch.allclose(g, gaps[0], atol=1e-6)
    joint_net = make_net("joint")
    joint_profile = [torch.cat([joint_net(s, joint(joint_net, a0, a1)) for a0 in range(3)]) for a1 in range(4)]
    assert not torch.allclose(joint_profile[1] - joint_profile[1][0], joint_profile[0] - joint_profile[0][0], atol=1e-6)


def test_additive_forms_refuse_box_actions():
    with pytest.raises(ConfigError, match="Discrete actions for every agent"):  # the CLI prints it as one line
        make_net("additive", [gymnasium.spaces.Discrete(3), gymnasium.spaces.Box(-1.0, 1.0, (2,))])
    with pytest.raises(ConfigError, match="Discrete actions for every agent"):
        make_net("additive_local", [gymnasium.spaces.Box(-1.0, 1.0, (2,)), gymnasium.spaces.Discrete(3)])
    with pytest.raises(ValueError, match="critic_form must be one of"):
        make_net("sum")


def test_auto_form_is_local_on_discrete_actions_and_joint_otherwise():
    assert make_net("auto").form == "additive_local"
    assert make_net("auto", [gymnasium.spaces.Discrete(3), gymnasium.spaces.Box(-1.0, 1.0, (2,))]).form == "joint"
    assert make_net("auto", [gymnasium.spaces.Box(-1.0, 1.0, (2,))] * 2).form == "joint"


def test_local_form_needs_the_observation_spaces():
    with pytest.raises(ValueError, match="obs_spaces"):
        ContinuousQNet(
            {"hidden_sizes": [16], "activation_func": "relu", "critic_form": "additive_local"}, SHARE, DISCRETE
        )


@pytest.mark.parametrize("form", ["joint", "additive", "additive_local"])
def test_critic_hidden_sizes_sets_the_critic_width_apart_from_the_actor(form):
    def widths(**keys):
        net = ContinuousQNet(
            {"hidden_sizes": [16, 16], "activation_func": "relu", "critic_form": form, **keys},
            SHARE,
            DISCRETE,
            2,
            obs_spaces=OBS,
        )
        return sorted({m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)})

    assert 16 in widths() and 48 not in widths()
    assert widths(critic_hidden_sizes=None) == widths()  # null: the actor's hidden_sizes
    assert 48 in widths(critic_hidden_sizes=[48]) and 16 not in widths(critic_hidden_sizes=[48])
    for bad in ("abc", [], [0], [16, True]):
        with pytest.raises(ConfigError, match="critic_hidden_sizes must be null or a non-empty list"):
            widths(critic_hidden_sizes=bad)


def test_an_agents_utilities_alone_match_the_joint_computation():
    head = make_net("additive_local").heads[0]
    obs = [torch.randn(6, 4), torch.randn(6, 6)]
    joint = head.utilities(obs)  # agent-major: agent 0's three, then agent 1's four
    assert torch.allclose(head.agent_utilities(obs[0], 0), joint[:, :3], atol=1e-5)
    assert torch.allclose(head.agent_utilities(obs[1], 1), joint[:, 3:], atol=1e-5)
