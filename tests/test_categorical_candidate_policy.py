"""HAQO's exact categorical control (``actor: categorical``): masked sampling, exact entropy and
KL against hand computations, the update and its line search, stacked sampling, checkpoints, the
refusal of Box spaces, and tiny end-to-end runs."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from e2e_helpers import TINY_OFF_POLICY, assert_run_layout, read_progress, train
from test_haqo import make_args as haqo_args

from harl.algorithms.actors.haqo import HAQO, POLICY_CLASSES, sample_candidates, select_joint_actions
from harl.models.policy_models.categorical_candidate_policy import CategoricalCandidatePolicy
from harl.models.policy_models.group_sampling import start_group_sampling
from harl.utils.config_ranges import describe, load_rules
from harl.utils.errors import ConfigError

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def make_args(**overrides):
    """HAQO's YAML defaults with small networks; the policies see the raw observations here (the
    availability input has its own test in test_haqo.py)."""
    return haqo_args(**{"condition_on_available": False, **overrides})


TINY_HAQO = {**TINY_OFF_POLICY, "n_timesteps": 4, "num_env_steps": 120}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def constant_policy(logits, device="cpu") -> CategoricalCandidatePolicy:
    """A policy whose logits are ``logits`` at every observation (zero weights, the bias)."""
    policy = CategoricalCandidatePolicy(make_args(), OBS, gym.spaces.Discrete(len(logits)), device)
    with torch.no_grad():
        policy.logits_layer.weight.zero_()
        policy.logits_layer.bias.copy_(torch.tensor(logits))
    return policy


# --- the distribution -----------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_exact_kl_entropy_and_likelihood_against_hand_computations(device):
    # old: logits [0, ln 2, 0, 5] with action 3 unavailable -> p_old = [1/4, 1/2, 1/4, 0]
    # new: logits [ln 2, 0, 0, -3]                          -> p_new = [1/2, 1/4, 1/4, 0]
    avail = torch.tensor([[1.0, 1.0, 1.0, 0.0]], device=device).expand(5, 4)
    obs = torch.randn(5, 3, device=device)
    old = constant_policy([0.0, math.log(2.0), 0.0, 5.0], device)
    record = old.sample(obs, avail, n=1, record=True).record
    assert torch.allclose(old.kl_from_record(obs, record), torch.zeros(5, device=device), atol=1e-7)
    new = constant_policy([math.log(2.0), 0.0, 0.0, -3.0], device)
    # KL = 1/4 ln((1/4)/(1/2)) + 1/2 ln((1/2)/(1/4)) + 1/4 ln 1 = ln(2) / 4
    expected = torch.full((5,), math.log(2.0) / 4, device=device)
    assert torch.allclose(new.kl_from_record(obs, record), expected, atol=1e-6)
    # exact entropy of [1/4, 1/2, 1/4]: 1.5 ln 2; likelihood of actions 1 and 2: 1/2, 1/4
    targets = 2.0 * torch.eye(4, device=device)[[1, 2]].unsqueeze(1).expand(2, 5, 4) - 1.0
    nll, neg_entropy = old.surrogate_losses(obs, targets, avail, 7)
    assert torch.allclose(neg_entropy, torch.full((5,), -1.5 * math.log(2.0), device=device), atol=1e-6)
    assert torch.allclose(nll[0], torch.full((5,), math.log(2.0), device=device), atol=1e-6)
    assert torch.allclose(nll[1], torch.full((5,), math.log(4.0), device=device), atol=1e-6)
    # without a mask the entropy is the full softmax's
    p = torch.softmax(torch.tensor([0.0, math.log(2.0), 0.0, 5.0]), -1)
    _, neg_full = old.surrogate_losses(obs, targets, None, 1)
    assert torch.allclose(neg_full.cpu(), (p * p.log()).sum().expand(5), atol=1e-6)  # -H


def test_masked_actions_are_never_sampled_and_samples_follow_the_masked_softmax():
    torch.manual_seed(0)
    logits = [0.0, math.log(2.0), 0.0, 5.0, 1.0]
    policy = constant_policy(logits)
    avail = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]).expand(4000, 5)
    obs = torch.randn(4000, 3)
    expected = torch.tensor([0.25, 0.5, 0.25, 0.0, 0.0])
    # finish with the mask (training candidates: +-1 codes) and without it (acting: the codec
    # decodes with the mask later): the same distribution, never an unavailable action
    with_mask = policy.codec.index(policy.sample(obs, avail, n=3).x, avail)
    decoded_later = policy.codec.index(policy.sample(obs, None, n=3, targets=False).x, avail)
    for actions in (with_mask, decoded_later):
        freq = torch.bincount(actions.flatten(), minlength=5).float() / actions.numel()
        assert freq[3] == 0 and freq[4] == 0
        assert torch.allclose(freq, expected, atol=0.015), freq
    # the masked actions' probability is exactly 0
    log_probs = policy.sample(obs[:2], avail[:2], record=True).record.log_probs
    assert torch.equal(log_probs.exp()[:, 3:], torch.zeros(2, 2))
    # unmasked: the full softmax
    actions = policy.codec.index(policy.sample(obs, None, n=3).x, None)
    freq = torch.bincount(actions.flatten(), minlength=5).float() / actions.numel()
    assert torch.allclose(freq, torch.softmax(torch.tensor(logits), -1), atol=0.015), freq
    # evaluation: the most likely available action
    assert (policy.codec.index(policy.eval_actions(obs[:4], avail[:4]), avail[:4]) == 1).all()
    assert (policy.codec.index(policy.eval_actions(obs[:4]), None) == 3).all()


def test_actions_are_always_available_through_selection_acting_and_training():
    """Random masks and a critic that prefers unavailable actions."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    spaces = [gym.spaces.Discrete(5), gym.spaces.Discrete(5), gym.spaces.Discrete(3)]
    actors = [HAQO(make_args(actor="categorical"), OBS, sp) for sp in spaces]
    for _ in range(20):
        avail = []
        for sp in spaces:
            mask = (torch.rand(30, sp.n, generator=gen) < 0.4).float()
            mask[torch.arange(30), torch.randint(sp.n, (30,), generator=gen)] = 1.0
            avail.append(mask)
        unavailable = torch.cat([1 - m for m in avail], -1)
        q_fn = lambda joint: (joint * unavailable).sum(-1, keepdim=True)  # noqa: E731
        obs = [torch.randn(30, 3) for _ in spaces]
        chosen = select_joint_actions(actors, obs, avail, 4, q_fn)
        for env_a, critic_a, mask in zip(chosen.env, chosen.critic, avail):
            assert mask.gather(1, env_a).eq(1).all()
            assert (critic_a * (1 - mask)).eq(0).all()
        for explore in (True, False):
            acts = actors[2].get_actions(obs[2], avail[2], explore=explore)
            assert avail[2].gather(1, acts).eq(1).all()
        assert (actors[2].sample_critic_action(obs[2], avail[2]) * (1 - avail[2])).eq(0).all()
        drawn = sample_candidates(actors, obs, 4, avail, record=True)
        for sample, mask in zip(drawn, avail):
            assert (((sample.x + 1) / 2) * (1 - mask)).eq(0).all()  # +-1 codes of available actions
    info = actors[0].train(obs[0], chosen.critic, 0, q_fn, avail[0], candidates=drawn[0])
    assert math.isfinite(info["loss_qv"]) and info["kl"] <= make_args()["kl_threshold"]


# --- the update -----------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("enumerate_discrete", [True, False])
def test_update_learns_the_best_available_action(enumerate_discrete, device):
    torch.manual_seed(0)
    actor = HAQO(
        make_args(actor="categorical", enumerate_discrete=enumerate_discrete, lr=3e-3),
        OBS,
        gym.spaces.Discrete(4),
        device,
    )
    obs = torch.randn(64, 3, device=device)
    avail = torch.ones(64, 4, device=device)
    avail[:, 3] = 0.0  # the critic's favourite is never available
    preference = torch.tensor([0.0, 0.0, 1.0, 5.0], device=device)
    q_fn = lambda joint: (joint * preference).sum(-1, keepdim=True)  # noqa: E731
    for _ in range(80):
        info = actor.train(obs, [torch.zeros(64, 4, device=device)], 0, q_fn, avail)
        assert info["kl"] <= actor.kl_threshold
    assert (actor.get_actions(obs, avail, explore=False) == 2).float().mean() > 0.9
    assert ("candidate_spread" in info) != enumerate_discrete


def test_line_search_bounds_the_exact_kl():
    torch.manual_seed(0)
    threshold = 1e-3
    actor = HAQO(
        make_args(actor="categorical", lr=3e-2, kl_threshold=threshold, ls_steps=6), OBS, gym.spaces.Discrete(5)
    )
    obs = torch.randn(64, 3)
    avail = (torch.rand(64, 5) < 0.7).float()
    avail[:, 0] = 1.0
    q_fn = lambda joint: joint[..., 4:5] - joint[..., 0:1]  # noqa: E731
    raw = []
    for _ in range(10):
        old = copy.deepcopy(actor.actor)
        info = actor.train(obs, [torch.zeros(64, 5)], 0, q_fn, avail)
        # the exact KL between the masked categoricals before and after, computed independently
        policy_input = actor.policy_input(obs, avail)  # the observation and the mask
        p_old = torch.softmax(old.logits(policy_input).masked_fill(avail == 0, -math.inf), -1)
        p_new = torch.softmax(actor.actor.logits(policy_input).masked_fill(avail == 0, -math.inf), -1)
        exact = torch.where(avail > 0, p_old * (p_old.log() - p_new.log()), torch.zeros(())).sum(-1).mean().item()
        assert exact <= threshold + 1e-7 and exact == pytest.approx(info["kl"], abs=1e-6)
        raw.append(info["kl_raw"])
    assert max(raw) > threshold  # the search had work to do


def test_entropy_term_keeps_the_policy_wider():
    entropies = {}
    for alpha in (0.0, 1.0):
        torch.manual_seed(0)
        actor = HAQO(
            make_args(actor="categorical", entropy_alpha=alpha, lr=3e-3, drift="none", enumerate_discrete=True),
            OBS,
            gym.spaces.Discrete(4),
        )
        obs = torch.randn(64, 3)
        q_fn = lambda joint: joint[..., 1:2]  # noqa: E731
        for _ in range(100):
            actor.train(obs, [torch.zeros(64, 4)], 0, q_fn)
        entropies[alpha] = -actor.actor.surrogate_losses(obs, torch.ones(1, 64, 4), None, 1)[1].mean().item()
    assert entropies[1.0] > entropies[0.0] + 0.3, entropies


# --- stacked sampling, share_param, checkpoints ---------------------------------------------


def test_stacked_sampling_equals_each_policys_own_logits_and_follows_updates():
    torch.manual_seed(0)
    actors = [HAQO(make_args(actor="categorical"), OBS, gym.spaces.Discrete(5)) for _ in range(3)]
    policies = [a.actor for a in actors]
    assert len({p.stack_key() for p in policies}) == 1
    other_obs = HAQO(make_args(actor="categorical"), gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(5)).actor
    other_act = HAQO(make_args(actor="categorical"), OBS, gym.spaces.Discrete(4)).actor
    assert other_obs.stack_key() != policies[0].stack_key() != other_act.stack_key()
    with torch.no_grad():
        for p in policies:  # non-trivial norms and biases
            for param in p.parameters():
                param.add_(0.3 * torch.randn_like(param))
    obs = [torch.randn(6, 7, 3) for _ in policies]

    def check():
        sampling = start_group_sampling(policies, obs, n=2, record=True)
        for g, (p, o) in enumerate(zip(policies, obs)):
            torch.testing.assert_close(sampling.logits[g], p.logits(o), rtol=1e-5, atol=1e-5)
        assert sampling.finish(None).x.shape == (2, 3, 6, 7, 5)

    check()
    cached = policies[0].stacks_cache
    assert len(cached) == 1
    actors[1].train(torch.randn(32, 3), [torch.zeros(32, 5)] * 3, 1, lambda j: j[..., 5:6])
    check()  # the optimizer step is seen: the stacks were rebuilt
    policies[2].load_state_dict(HAQO(make_args(actor="categorical"), OBS, gym.spaces.Discrete(5)).actor.state_dict())
    check()
    # sample_candidates batches them: one logits call per group, records split per agent
    calls = []
    for p in policies:
        p.logits_layer.register_forward_hook(lambda m, a, o: calls.append(o.shape))
    avail = [torch.ones(7, 5) for _ in policies]
    drawn = sample_candidates(actors, [o[0] for o in obs], 4, avail, record=True)
    assert calls == []  # the stacked call uses the weights, not the modules
    for actor, sample, o in zip(actors, drawn, obs):
        assert sample.x.shape == (4, 7, 5) and sample.record.log_probs.shape == (7, 5)
        assert torch.allclose(actor.actor.kl_from_record(o[0], sample.record), torch.zeros(7), atol=1e-5)


def test_share_param_samples_every_agent_from_the_shared_actor():
    torch.manual_seed(0)
    shared = HAQO(make_args(actor="categorical"), OBS, gym.spaces.Discrete(5))
    actors = [shared] * 3
    obs = [torch.randn(10, 3) for _ in actors]
    avail = [torch.ones(10, 5) for _ in actors]
    drawn = sample_candidates(actors, obs, 4, avail, record=True)
    for sample, o in zip(drawn, obs):
        assert sample.x.shape == (4, 10, 5)
        assert torch.allclose(shared.actor.kl_from_record(o, sample.record), torch.zeros(10), atol=1e-6)
    chosen = select_joint_actions(actors, obs, avail, 1)
    assert [a.shape for a in chosen.env] == [(10, 1)] * 3


def test_state_dict_round_trip_and_weight_files(tmp_path):
    torch.manual_seed(0)
    space = gym.spaces.Discrete(4)
    actor = HAQO(make_args(actor="categorical"), OBS, space)
    obs, avail = torch.randn(16, 3), torch.ones(16, 4)
    q_fn = lambda joint: joint[..., 2:3]  # noqa: E731
    actor.train(obs, [torch.zeros(16, 4)], 0, q_fn, avail)
    fresh = HAQO(make_args(actor="categorical"), OBS, space)
    fresh.load_state_dict(copy.deepcopy(actor.state_dict()))
    for a, b in zip(actor.actor.parameters(), fresh.actor.parameters()):
        assert torch.equal(a, b)
    torch.manual_seed(1)
    info_a = actor.train(obs, [torch.zeros(16, 4)], 0, q_fn, avail)
    torch.manual_seed(1)
    info_b = fresh.train(obs, [torch.zeros(16, 4)], 0, q_fn, avail)
    assert info_a["loss_qv"] == info_b["loss_qv"] and info_a["kl"] == info_b["kl"]
    actor.save(str(tmp_path), 0)
    other = HAQO(make_args(actor="categorical"), OBS, space)
    other.restore(str(tmp_path), 0)
    for a, b in zip(actor.actor.parameters(), other.actor.parameters()):
        assert torch.equal(a, b)


# --- configuration --------------------------------------------------------------------------


def test_box_actions_are_refused_with_a_message():
    with pytest.raises(ConfigError, match="actor 'categorical' needs a Discrete action space"):
        HAQO(make_args(actor="categorical"), OBS, BOX)


def test_box_agent_refused_by_the_runner_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"actor 'categorical' needs Discrete actions .* agent 2 of toy"):
        train("haqo", "toy", str(tmp_path), {**TINY_HAQO, "actor": "categorical", "continuous_agent": True})
    assert os.listdir(tmp_path) == []


def test_box_refused_through_examples_train(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "train.py"),
            "--algo",
            "haqo",
            "--env",
            "pettingzoo_mpe",
            "--actor",
            "categorical",
            "--continuous_actions",
            "True",
            "--n_env_workers",
            "0",
            "--log_dir",
            str(tmp_path / "results"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode != 0
    assert "actor 'categorical' needs Discrete actions" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("config.json"))


def test_the_actor_key_allowed_values():
    assert set(load_rules().choices["actor"]) == set(POLICY_CLASSES)
    assert describe("actor") == "one of diffusion, gaussian, categorical"
    from harl.cli import parse_train_args

    with pytest.raises(ConfigError, match="'actor' must be one of diffusion, gaussian, categorical, got 'flow'"):
        parse_train_args(["--algo", "haqo", "--env", "toy", "--actor", "flow"])
    parse_train_args(["--algo", "haqo", "--env", "toy", "--actor", "categorical"])


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{}, {"enumerate_discrete": True, "behavior_candidates": 2, "target_candidates": 2}])
def test_toy_end_to_end(tmp_path, extra):
    """The toy env raises on an unavailable action: finishing proves the masks held."""
    runner = train("haqo", "toy", str(tmp_path), {**TINY_HAQO, "actor": "categorical", **extra})
    rows = assert_run_layout(runner.run_dir, 120)
    kl = [float(r[c]) for r in rows for c in r if c.endswith("/kl_max") and r[c] != ""]
    assert kl and max(kl) <= runner.flat_args["kl_threshold"]
    assert any(r["agent0/loss_qv"] for r in rows)


def test_mpe_discrete_share_param_end_to_end_and_resume(tmp_path):
    from harl.cli import parse_train_args
    from harl.runners import RUNNER_REGISTRY

    runner = train(
        "haqo",
        "pettingzoo_mpe",
        str(tmp_path),
        {**TINY_HAQO, "actor": "categorical", "continuous_actions": False, "share_param": True},
    )
    assert_run_layout(runner.run_dir, 120)
    assert read_progress(runner.run_dir)[-1]["agent0/kl"] != ""
    args, algo_args, env_args = parse_train_args(["--resume", runner.run_dir])
    resumed = RUNNER_REGISTRY["haqo"](args, algo_args, env_args)
    try:
        resumed.maybe_resume()
        assert isinstance(resumed.actor[0].actor, CategoricalCandidatePolicy)
        for p, q in zip(runner.actor[0].actor.parameters(), resumed.actor[0].actor.parameters()):
            assert torch.equal(p, q)
    finally:
        resumed.close()
