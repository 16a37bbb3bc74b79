"""Off-policy actors and critics: TD targets, twin-min, Polyak, temperature, masks, updates."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from harl.algorithms.actors.haddpg import HADDPG
from harl.algorithms.actors.hasac import HASAC
from harl.algorithms.actors.hatd3 import HATD3
from harl.algorithms.actors.maddpg import MADDPG
from harl.algorithms.actors.matd3 import MATD3
from harl.algorithms.critics.continuous_q_critic import ContinuousQCritic
from harl.algorithms.critics.soft_twin_continuous_q_critic import SoftTwinContinuousQCritic
from harl.algorithms.critics.twin_continuous_q_critic import TwinContinuousQCritic
from harl.common.buffers.off_policy_buffer_base import OffPolicyBatch

B = 64
SHARE = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
OBS = [gym.spaces.Box(-1.0, 1.0, (4,), np.float32), gym.spaces.Box(-1.0, 1.0, (3,), np.float32)]
BOX_ACTS = [gym.spaces.Box(-1.0, 1.0, (2,), np.float32), gym.spaces.Box(0.0, 2.0, (1,), np.float32)]
MIXED_ACTS = [gym.spaces.Box(-1.0, 1.0, (2,), np.float32), gym.spaces.Discrete(4)]


def make_args(**overrides):
    args = dict(
        hidden_sizes=[32, 32],
        activation_func="relu",
        final_activation_func="tanh",
        use_feature_normalization=True,
        initialization_method="orthogonal_",
        gain=0.01,
        lr=1e-3,
        critic_lr=1e-3,
        polyak=0.005,
        gamma=0.9,
        use_policy_active_masks=True,
        use_proper_time_limits=True,
        use_huber_loss=False,
        huber_delta=10.0,
        use_valuenorm=False,
        auto_alpha=True,
        alpha=0.2,
        alpha_lr=3e-4,
        expl_noise=0.1,
        policy_noise=0.2,
        noise_clip=0.5,
        policy_freq=2,
        critic_form="joint",
    )
    args.update(overrides)
    return args


def make_batch(act_spaces, state_type="EP", seed=0):
    """A random batch in the buffer's format, as tensors."""
    g = torch.Generator().manual_seed(seed)
    stream = (B, 2) if state_type == "FP" else (B,)
    actions = [
        torch.randint(0, sp.n, (B, 1), generator=g).float()
        if isinstance(sp, gym.spaces.Discrete)
        else torch.rand(B, sp.shape[0], generator=g)
        for sp in act_spaces
    ]
    avail = [torch.ones(B, sp.n) if isinstance(sp, gym.spaces.Discrete) else None for sp in act_spaces]
    return OffPolicyBatch(
        share_obs=torch.randn(*stream, 5, generator=g),
        obs=[torch.randn(B, sp.shape[0], generator=g) for sp in OBS],
        actions=actions,
        available_actions=avail,
        valid_transitions=torch.ones(B, 2, 1),
        rewards=torch.randn(*stream, 1, generator=g),
        dones=torch.zeros(*stream, 1),
        terms=torch.zeros(*stream, 1),
        gammas=torch.full((*stream, 1), 0.9),
        next_share_obs=torch.randn(*stream, 5, generator=g),
        next_obs=[torch.randn(B, sp.shape[0], generator=g) for sp in OBS],
        next_available_actions=avail,
    )


def constant_target(critic, values):
    """Make target head j output the constant ``values[j]`` whatever its input."""
    for head, v in zip(critic.target_critic.heads, values):
        last = head.rest[-2]
        last.weight.data.zero_()
        last.bias.data.fill_(v)


def next_actions_for(batch, act_spaces):
    return [torch.zeros(B, sp.n if isinstance(sp, gym.spaces.Discrete) else sp.shape[0]) for sp in act_spaces]


# --- critics: TD targets ----------------------------------------------------------------------


def test_twin_min_in_td_target():
    critic = TwinContinuousQCritic(make_args(), SHARE, BOX_ACTS, 2, "EP")
    constant_target(critic, [3.0, 7.0])
    batch = make_batch(BOX_ACTS)
    y = critic.td_target(batch, next_actions_for(batch, BOX_ACTS))
    torch.testing.assert_close(y, batch.rewards + 0.9 * 3.0)


@pytest.mark.parametrize("proper_time_limits", [True, False])
def test_done_versus_truncation(proper_time_limits):
    critic = ContinuousQCritic(make_args(use_proper_time_limits=proper_time_limits), SHARE, BOX_ACTS, 2, "EP")
    constant_target(critic, [10.0])
    batch = make_batch(BOX_ACTS)
    # rows 0-9: terminated; rows 10-19: truncated (episode ended, no termination); rest: running
    dones = torch.zeros(B, 1)
    dones[:20] = 1.0
    terms = torch.zeros(B, 1)
    terms[:10] = 1.0
    y = critic.td_target(batch._replace(dones=dones, terms=terms), next_actions_for(batch, BOX_ACTS))
    bootstrap = batch.rewards + 0.9 * 10.0
    torch.testing.assert_close(y[:10], batch.rewards[:10])
    torch.testing.assert_close(y[10:20], bootstrap[10:20] if proper_time_limits else batch.rewards[10:20])
    torch.testing.assert_close(y[20:], bootstrap[20:])


def test_soft_target_subtracts_joint_entropy_term():
    critic = SoftTwinContinuousQCritic(make_args(auto_alpha=False, alpha=0.5), SHARE, MIXED_ACTS, 2, "FP")
    constant_target(critic, [4.0, 2.0])
    batch = make_batch(MIXED_ACTS, "FP")
    logps = [torch.full((B, 1), -1.0), torch.full((B, 1), -3.0)]
    y = critic.td_target(batch, next_actions_for(batch, MIXED_ACTS), logps)
    # y = r + gamma^m (min(4, 2) - 0.5 * (-1 - 3))
    assert y.shape == (B, 2, 1)
    torch.testing.assert_close(y, batch.rewards + 0.9 * (2.0 + 2.0))


def test_n_step_discount_comes_from_the_batch():
    critic = ContinuousQCritic(make_args(), SHARE, BOX_ACTS, 2, "EP")
    constant_target(critic, [1.0])
    batch = make_batch(BOX_ACTS)
    gammas = torch.full((B, 1), 0.9**3)
    y = critic.td_target(batch._replace(gammas=gammas), next_actions_for(batch, BOX_ACTS))
    torch.testing.assert_close(y, batch.rewards + 0.729)


def test_polyak_update_of_critic_and_actor_targets():
    critic = TwinContinuousQCritic(make_args(polyak=0.1), SHARE, BOX_ACTS, 2, "EP")
    actor = HATD3(make_args(polyak=0.1), OBS[0], BOX_ACTS[0])
    for net in (critic.critic, actor.actor):
        for p in net.parameters():
            p.data.add_(1.0)
    before = [copy.deepcopy(critic.target_critic.state_dict()), copy.deepcopy(actor.target_actor.state_dict())]
    critic.soft_update()
    actor.soft_update()
    for online, target, old in zip((critic.critic, actor.actor), (critic.target_critic, actor.target_actor), before):
        for name, p in online.named_parameters():
            torch.testing.assert_close(dict(target.named_parameters())[name], 0.9 * old[name] + 0.1 * p)
            assert not dict(target.named_parameters())[name].requires_grad


# --- critics: learning and evaluation ---------------------------------------------------------


@pytest.mark.parametrize(
    "critic_cls, state_type, act_spaces, extra",
    [
        (ContinuousQCritic, "EP", BOX_ACTS, {}),
        (TwinContinuousQCritic, "FP", BOX_ACTS, {"use_huber_loss": True}),
        (SoftTwinContinuousQCritic, "EP", MIXED_ACTS, {"use_valuenorm": True}),
        (SoftTwinContinuousQCritic, "FP", MIXED_ACTS, {}),
    ],
)
def test_critic_loss_decreases_on_a_fixed_batch(critic_cls, state_type, act_spaces, extra):
    torch.manual_seed(0)
    critic = critic_cls(make_args(critic_lr=5e-3, **extra), SHARE, act_spaces, 2, state_type)
    batch = make_batch(act_spaces, state_type)
    next_actions = next_actions_for(batch, act_spaces)
    logps = [torch.zeros(B, 1)] * 2
    losses = [critic.train(batch, next_actions, logps)["critic_loss"] for _ in range(100)]
    assert losses[-1] < 0.3 * losses[0]


def test_get_values_accepts_candidate_dimensions():
    torch.manual_seed(0)
    for state_type in ("EP", "FP"):
        critic = SoftTwinContinuousQCritic(make_args(), SHARE, MIXED_ACTS, 2, state_type)
        batch = make_batch(MIXED_ACTS, state_type)
        candidates = torch.randn(7, 3, B, 6)
        q = critic.get_values(batch.share_obs, candidates)
        assert q.shape == (7, 3, B, 1)
        torch.testing.assert_close(q[4, 1], critic.get_values(batch.share_obs, candidates[4, 1]))


DISCRETE_ACTS = [gym.spaces.Discrete(3), gym.spaces.Discrete(4)]


@pytest.mark.parametrize("state_type", ["EP", "FP"])
def test_local_additive_critic_reads_the_batch_observations(state_type):
    """critic_form additive_local: TD training reads batch.obs / batch.next_obs, evaluations take obs."""
    torch.manual_seed(0)
    critic = TwinContinuousQCritic(
        make_args(critic_lr=5e-3, critic_form="additive_local"), SHARE, DISCRETE_ACTS, 2, state_type, obs_spaces=OBS
    )
    batch = make_batch(DISCRETE_ACTS, state_type)
    next_actions = next_actions_for(batch, DISCRETE_ACTS)
    losses = [critic.train(batch, next_actions)["critic_loss"] for _ in range(100)]
    assert losses[-1] < 0.3 * losses[0]
    candidates = torch.randn(5, B, 7)
    q = critic.min_q(batch.share_obs, candidates, obs=batch.obs)
    assert q.shape == (5, B, 1)
    torch.testing.assert_close(q[3], critic.min_q(batch.share_obs, candidates[3], obs=batch.obs))
    other_obs = [batch.obs[0], torch.randn_like(batch.obs[1])]
    assert not torch.allclose(q, critic.min_q(batch.share_obs, candidates, obs=other_obs))


@pytest.mark.parametrize("state_type", ["EP", "FP"])
@pytest.mark.parametrize("critic_form", ["joint", "additive_local"])
def test_min_q_fn_scores_like_min_q_and_reads_the_observations_once(state_type, critic_form):
    """HAQO's actor round scores every agent's candidates at the same states: min_q_fn gives
    min_q's values, and the local utilities are computed when it is built, not at every call."""
    torch.manual_seed(0)
    critic = TwinContinuousQCritic(
        make_args(critic_form=critic_form), SHARE, DISCRETE_ACTS, 2, state_type, obs_spaces=OBS
    )
    batch = make_batch(DISCRETE_ACTS, state_type)
    calls = []
    for head in critic.critic.heads:
        if critic_form == "additive_local":
            head.utility.register_forward_hook(lambda *_: calls.append(1))
    q_fn = critic.min_q_fn(batch.share_obs, batch.obs, target=False)
    built = len(calls)
    for candidates in (torch.randn(5, B, 7), torch.randn(B, 7)):
        torch.testing.assert_close(
            q_fn(candidates), critic.min_q(batch.share_obs, candidates, obs=batch.obs), rtol=0, atol=0
        )
    if critic_form == "additive_local":  # only the two min_q calls computed utilities again
        assert (built, len(calls)) == (critic.n_heads, 3 * critic.n_heads)
    target_fn = critic.min_q_fn(batch.share_obs, batch.obs, target=True)
    candidates = torch.randn(3, B, 7)
    torch.testing.assert_close(
        target_fn(candidates), critic.min_q(batch.share_obs, candidates, target=True, obs=batch.obs), rtol=0, atol=0
    )


@pytest.mark.parametrize("state_type", ["EP", "FP"])
def test_min_q_fn_mean_averages_the_heads_where_min_takes_the_lower(state_type):
    """HAQO's ``actor_q``: ``combine="mean"`` scores with the twin heads' mean, ``"min"`` with
    their minimum; anything else is refused."""
    torch.manual_seed(0)
    critic = TwinContinuousQCritic(
        make_args(critic_form="additive_local"), SHARE, DISCRETE_ACTS, 2, state_type, obs_spaces=OBS
    )
    batch = make_batch(DISCRETE_ACTS, state_type)
    candidates = torch.randn(4, B, 7)
    heads = critic._q_heads(critic.critic, batch.share_obs, candidates, batch.obs)
    assert not torch.allclose(heads[..., 0], heads[..., 1])  # the two heads differ: the test can fail
    per_state = (lambda q: q.mean(-2)) if state_type == "FP" else (lambda q: q)
    for combine, expected in (("min", heads.min(-1, keepdim=True).values), ("mean", heads.mean(-1, keepdim=True))):
        got = critic.min_q_fn(batch.share_obs, batch.obs, combine=combine)(candidates)
        torch.testing.assert_close(got, per_state(expected))
    with pytest.raises(ValueError, match="combine"):
        critic.min_q_fn(batch.share_obs, batch.obs, combine="max")


def test_discrete_actions_enter_the_critic_one_hot():
    critic = ContinuousQCritic(make_args(), SHARE, MIXED_ACTS, 2, "EP")
    box, onehot = critic.encode_actions([torch.tensor([[0.5, -0.5]]), torch.tensor([[2.0]])])
    torch.testing.assert_close(box, torch.tensor([[0.5, -0.5]]))
    torch.testing.assert_close(onehot, torch.tensor([[0.0, 0.0, 1.0, 0.0]]))


# --- actors -----------------------------------------------------------------------------------


def test_hasac_temperature_moves_toward_the_target_entropy():
    torch.manual_seed(0)
    obs = torch.randn(B, 4)
    for target, direction in ((-20.0, -1.0), (20.0, 1.0)):
        actor = HASAC(make_args(alpha_lr=0.05), OBS[0], BOX_ACTS[0])
        actor.temperature.target_entropy = target
        alphas = []
        for _ in range(20):
            _, logp = actor.sample(obs)
            alphas.append(actor.temperature.update(logp)["alpha"])
        # entropy above the target: alpha falls; below: alpha rises
        assert np.sign(alphas[-1] - 1.0) == direction and np.all(np.sign(np.diff(alphas)) == direction)


def test_hasac_default_target_entropies():
    assert HASAC(make_args(), OBS[0], BOX_ACTS[0]).target_entropy == -2.0
    assert HASAC(make_args(), OBS[1], MIXED_ACTS[1]).target_entropy == 0.0
    critic = SoftTwinContinuousQCritic(make_args(), SHARE, MIXED_ACTS, 2, "EP")
    assert critic.temperature.target_entropy == -2.0
    info = critic.update_alpha(torch.full((B, 1), -5.0))
    assert info["alpha"] < 1.0  # joint entropy 5 above the target -2: alpha falls


def test_categorical_hasac_never_samples_masked_actions():
    torch.manual_seed(0)
    actor = HASAC(make_args(), OBS[1], MIXED_ACTS[1])
    obs = torch.randn(2000, 3)
    avail = (torch.rand(2000, 4) < 0.5).float()
    avail[torch.arange(2000), torch.randint(0, 4, (2000,))] = 1.0
    for explore in (True, False):
        actions = actor.get_actions(obs, avail, explore=explore)
        assert actions.shape == (2000, 1) and actions.dtype == torch.int64
        assert torch.all(avail.gather(1, actions) == 1)
    onehot, logp = actor.sample(obs, avail)
    assert torch.all((onehot * (1 - avail)).sum(-1) == 0) and torch.all(onehot.sum(-1) == 1)
    assert torch.isfinite(logp).all() and torch.all(logp <= 0)
    target, _ = actor.get_target_actions(obs, avail)
    assert torch.all((target * (1 - avail)).sum(-1) == 0)


def test_squashed_gaussian_actions_respect_bounds_and_log_prob_is_finite():
    torch.manual_seed(0)
    actor = HASAC(make_args(), OBS[1], BOX_ACTS[1])  # Box(0, 2)
    obs = torch.randn(500, 3) * 10
    for explore in (True, False):
        a = actor.get_actions(obs, explore=explore)
        assert a.shape == (500, 1) and torch.all((a >= 0) & (a <= 2))
    a, logp = actor.sample(obs)
    assert a.requires_grad and torch.isfinite(logp).all()


def test_ddpg_exploration_and_td3_target_smoothing_stay_in_bounds():
    torch.manual_seed(0)
    args = make_args(expl_noise=5.0, policy_noise=5.0, noise_clip=0.25)
    td3 = HATD3(args, OBS[1], BOX_ACTS[1])  # Box(0, 2): half-width 1
    obs = torch.randn(1000, 3)
    noisy = td3.get_actions(obs, explore=True)
    assert torch.all((noisy >= 0) & (noisy <= 2)) and not torch.allclose(noisy, td3.get_actions(obs, explore=False))
    smoothed, logp = td3.get_target_actions(obs)
    target = td3.target_actor(obs)
    assert logp is None and torch.all((smoothed - target).abs() <= 0.25 + 1e-6)
    assert td3.policy_freq == 2 and HADDPG(args, OBS[1], BOX_ACTS[1]).policy_freq == 1


def test_ma_variants_share_the_ha_actors():
    assert issubclass(MADDPG, HADDPG) and issubclass(MATD3, HATD3)
    with pytest.raises(NotImplementedError, match="Box"):
        HADDPG(make_args(), OBS[1], MIXED_ACTS[1])


@pytest.mark.parametrize(
    "actor_cls, critic_cls, act_spaces",
    [
        (HADDPG, ContinuousQCritic, BOX_ACTS),
        (HATD3, TwinContinuousQCritic, BOX_ACTS),
        (HASAC, SoftTwinContinuousQCritic, MIXED_ACTS),
    ],
)
def test_actor_update_improves_its_objective_and_touches_only_its_policy(actor_cls, critic_cls, act_spaces):
    torch.manual_seed(0)
    critic = critic_cls(make_args(), SHARE, act_spaces, 2, "FP")
    actors = [actor_cls(make_args(auto_alpha=False, alpha=1e-3), OBS[i], act_spaces[i]) for i in range(2)]
    batch = make_batch(act_spaces, "FP")
    with torch.no_grad():
        joint = [a.sample(batch.obs[i], batch.available_actions[i])[0] for i, a in enumerate(actors)]
    critic_before = copy.deepcopy(critic.critic.state_dict())
    other_before = copy.deepcopy(actors[1].actor.state_dict())

    def value():
        with torch.no_grad():
            torch.manual_seed(1)
            a0 = actors[0].sample(batch.obs[0])[0]
            return critic.get_values(batch.share_obs, torch.cat([a0, joint[1]], -1)).mean().item()

    start = value()
    for _ in range(30):
        info = actors[0].train(batch.obs[0], batch.share_obs, joint, 0, critic, None, batch.valid_transitions[:, 0])
    assert value() > start and "actor_loss" in info
    for name, p in critic.critic.state_dict().items():
        torch.testing.assert_close(p, critic_before[name])
    for name, p in actors[1].actor.state_dict().items():
        torch.testing.assert_close(p, other_before[name])


def test_hasac_actor_scores_its_actions_with_a_local_additive_critic():
    """critic_form additive_local under HASAC: the actor update hands every agent's observations to
    the critic (all_obs), and only its own utility ranks its actions."""
    torch.manual_seed(0)
    critic = SoftTwinContinuousQCritic(
        make_args(critic_form="additive_local"), SHARE, DISCRETE_ACTS, 2, "EP", obs_spaces=OBS
    )
    actor = HASAC(make_args(auto_alpha=False, alpha=1e-3), OBS[0], DISCRETE_ACTS[0])
    batch = make_batch(DISCRETE_ACTS)
    joint = critic.encode_actions(batch.actions)

    def value():
        with torch.no_grad():
            torch.manual_seed(1)
            a0 = actor.sample(batch.obs[0], batch.available_actions[0])[0]
            return critic.get_values(batch.share_obs, torch.cat([a0, joint[1]], -1), batch.obs).mean().item()

    start = value()
    for _ in range(30):
        actor.train(
            batch.obs[0],
            batch.share_obs,
            joint,
            0,
            critic,
            batch.available_actions[0],
            batch.valid_transitions[:, 0],
            batch.obs,
        )
    assert value() > start
    with pytest.raises(ValueError, match="pass obs"):
        actor.train(batch.obs[0], batch.share_obs, joint, 0, critic, batch.available_actions[0])


def test_active_masks_exclude_dead_agents_from_the_actor_loss():
    torch.manual_seed(0)
    critic = ContinuousQCritic(make_args(), SHARE, BOX_ACTS, 2, "EP")
    batch = make_batch(BOX_ACTS)
    masked = HADDPG(make_args(), OBS[0], BOX_ACTS[0])
    alive_only = copy.deepcopy(masked)
    joint = [torch.zeros(B, 2), torch.zeros(B, 1)]
    valid = torch.zeros(B, 1)
    valid[: B // 2] = 1.0
    # the masked loss over the whole batch equals the loss over the alive half alone
    info = masked.train(batch.obs[0], batch.share_obs, joint, 0, critic, None, valid)
    half = slice(0, B // 2)
    info_alive = alive_only.train(batch.obs[0][half], batch.share_obs[half], [j[half] for j in joint], 0, critic)
    assert info["actor_loss"] == pytest.approx(info_alive["actor_loss"], rel=1e-5)
    for p, q in zip(masked.actor.parameters(), alive_only.actor.parameters()):
        torch.testing.assert_close(p, q)


# --- schedules and checkpoints ----------------------------------------------------------------


def test_lr_decay_is_linear():
    actor = HASAC(make_args(lr=1e-3), OBS[0], BOX_ACTS[0])
    critic = SoftTwinContinuousQCritic(make_args(critic_lr=2e-3), SHARE, BOX_ACTS, 2, "EP")
    actor.lr_decay(51, 100)
    critic.lr_decay(51, 100)
    assert actor.actor_optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert critic.critic_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_state_dict_round_trip_of_actor_and_critic(tmp_path):
    torch.manual_seed(0)
    batch = make_batch(MIXED_ACTS)
    actor = HASAC(make_args(), OBS[1], MIXED_ACTS[1])
    critic = SoftTwinContinuousQCritic(make_args(use_valuenorm=True), SHARE, MIXED_ACTS, 2, "EP")
    joint = [torch.zeros(B, 2), torch.zeros(B, 4)]
    for _ in range(3):
        critic.train(batch, joint, [torch.zeros(B, 1)] * 2)
        actor.train(batch.obs[1], batch.share_obs, joint, 1, critic, batch.available_actions[1])
        critic.update_alpha(torch.zeros(B, 1))
        critic.soft_update()
    path = tmp_path / "ck.pt"
    torch.save({"actor": actor.state_dict(), "critic": critic.state_dict()}, path)
    state = torch.load(path, weights_only=False)
    actor2 = HASAC(make_args(), OBS[1], MIXED_ACTS[1])
    critic2 = SoftTwinContinuousQCritic(make_args(use_valuenorm=True), SHARE, MIXED_ACTS, 2, "EP")
    actor2.load_state_dict(state["actor"])
    critic2.load_state_dict(state["critic"])
    assert actor2.temperature.alpha.item() == actor.temperature.alpha.item() < 1.0
    assert critic2.temperature.alpha.item() == critic.temperature.alpha.item()
    y1 = critic.td_target(batch, joint, [torch.zeros(B, 1)] * 2)
    y2 = critic2.td_target(batch, joint, [torch.zeros(B, 1)] * 2)
    torch.testing.assert_close(y1, y2)
    # the optimiser states came along: the next identical step gives identical weights
    for a in (actor, actor2):
        torch.manual_seed(3)
        a.train(batch.obs[1], batch.share_obs, joint, 1, critic, batch.available_actions[1])
    for p, q in zip(actor.actor.parameters(), actor2.actor.parameters()):
        torch.testing.assert_close(p, q)
    # HARL-style weight files
    actor.save(str(tmp_path), 1)
    critic.save(str(tmp_path))
    actor3 = HASAC(make_args(), OBS[1], MIXED_ACTS[1])
    actor3.restore(str(tmp_path), 1)
    critic3 = SoftTwinContinuousQCritic(make_args(use_valuenorm=True), SHARE, MIXED_ACTS, 2, "EP")
    critic3.restore(str(tmp_path))
    for online, loaded in (
        (actor.actor, actor3.actor),
        (critic.critic, critic3.critic),
        (critic.target_critic, critic3.target_critic),
    ):
        for p, q in zip(online.parameters(), loaded.parameters()):
            torch.testing.assert_close(p, q)
    torch.testing.assert_close(critic3.value_normalizer.running_mean, critic.value_normalizer.running_mean)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize(
    "actor_cls, critic_cls, act_spaces",
    [
        (HATD3, TwinContinuousQCritic, BOX_ACTS),
        (HASAC, SoftTwinContinuousQCritic, MIXED_ACTS),
    ],
)
def test_one_full_update_on_device(device, actor_cls, critic_cls, act_spaces):
    args = make_args(use_valuenorm=True)
    critic = critic_cls(args, SHARE, act_spaces, 2, "EP", device=device)
    actors = [actor_cls(args, OBS[i], act_spaces[i], device=device) for i in range(2)]
    batch = make_batch(act_spaces).to(device)
    nxt = [a.get_target_actions(batch.next_obs[i], batch.next_available_actions[i]) for i, a in enumerate(actors)]
    critic.train(batch, [n[0] for n in nxt], [n[1] for n in nxt])
    with torch.no_grad():
        out = [a.sample(batch.obs[i], batch.available_actions[i]) for i, a in enumerate(actors)]
    joint = [o[0] for o in out]
    for i, actor in enumerate(actors):
        avail, valid = batch.available_actions[i], batch.valid_transitions[:, i]
        actor.train(batch.obs[i], batch.share_obs, joint, i, critic, avail, valid)
        actor.soft_update()
    critic.soft_update()
    rollout = actors[1].get_actions(np.zeros((3, OBS[1].shape[0]), np.float32), None, explore=True)
    assert rollout.device.type == torch.device(device).type
