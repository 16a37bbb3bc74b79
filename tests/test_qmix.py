"""QMIX and VDN: the mixers, the episode buffer, the TD(lambda) targets, masked acting and
targets, padding, end-to-end runs and resume."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from e2e_helpers import TINY_QMIX, assert_run_layout, kill_and_resume, read_progress, train

from harl.algorithms.qmix import QMIX, masked_argmax, td_lambda_targets
from harl.cli import parse_train_args
from harl.common.buffers.episode_buffer import EpisodeReplayBuffer
from harl.experiments.evaluation import evaluate_run
from harl.models.value_function_models.mixers import QMixer, VDNMixer
from harl.runners import RUNNER_REGISTRY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LEARNER_ARGS = {
    "mixer": "qmix",
    "hidden_sizes": [16],
    "activation_func": "relu",
    "initialization_method": "orthogonal_",
    "use_feature_normalization": False,
    "obs_last_action": True,
    "obs_agent_id": True,
    "lr": 1e-3,
    "mixing_embed_dim": 8,
    "hypernet_embed": 16,
    "hypernet_layers": 2,
    "gamma": 0.9,
    "td_lambda": 0.6,
    "double_q": True,
    "max_grad_norm": 10.0,
    "target_update_interval": 5,
    "polyak": 1.0,
}


# --- mixers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 2])
def test_qmix_is_monotonic_in_every_agent_q(layers):
    torch.manual_seed(0)
    mixer = QMixer(
        4,
        12,
        {
            "mixing_embed_dim": 8,
            "hypernet_embed": 16,
            "hypernet_layers": layers,
            "use_feature_normalization": layers == 2,
        },
    )
    qs = (5 * torch.randn(256, 4)).requires_grad_()
    states = 3 * torch.randn(256, 12)
    mixer(qs, states).sum().backward()
    assert (qs.grad >= 0).all()
    assert (qs.grad > 0).any()
    # and the order of a single agent's Q is kept for any state and other agents' Qs
    up = qs.detach().clone()
    up[:, 2] += 1.0
    assert (mixer(up, states) >= mixer(qs.detach(), states) - 1e-5).all()


def test_vdn_is_the_sum_and_shapes_keep_their_leading_dims():
    qs, states = torch.randn(3, 7, 5), torch.randn(3, 7, 10)
    torch.testing.assert_close(VDNMixer(5, 10, {})(qs, states), qs.sum(-1, keepdim=True))
    mixer = QMixer(
        5, 10, {"mixing_embed_dim": 4, "hypernet_embed": 8, "hypernet_layers": 2, "use_feature_normalization": True}
    )
    assert mixer(qs, states).shape == (3, 7, 1)


# --- targets ------------------------------------------------------------------------------------


def _reference_targets(rewards, terminated, next_values, gamma, lam):
    """TD(lambda) of one episode by the textbook recursion."""
    out, later = [0.0] * len(rewards), None
    for t in reversed(range(len(rewards))):
        follow = next_values[t] if later is None else later
        out[t] = rewards[t] + gamma * (1 - terminated[t]) * ((1 - lam) * next_values[t] + lam * follow)
        later = out[t]
    return out


@pytest.mark.parametrize("lam", [0.0, 0.6, 1.0])
def test_td_lambda_targets_match_the_recursion_per_episode_and_zero_padding(lam):
    rng = np.random.default_rng(0)
    lengths, width = [5, 2, 7], 7
    reward, term, nxt = (torch.tensor(rng.normal(size=(3, width)), dtype=torch.float32) for _ in range(3))
    term = (term > 1.0).float()
    mask = torch.tensor([[1.0] * n + [0.0] * (width - n) for n in lengths])
    got = td_lambda_targets(reward, term, mask, nxt, 0.9, lam)
    for b, n in enumerate(lengths):
        want = _reference_targets(reward[b, :n].tolist(), term[b, :n].tolist(), nxt[b, :n].tolist(), 0.9, lam)
        np.testing.assert_allclose(got[b, :n].numpy(), want, rtol=1e-5, atol=1e-5)
        assert (got[b, n:] == 0).all()


# --- acting and targets respect the availability masks -----------------------------------------


def test_unavailable_actions_are_never_chosen_even_with_the_highest_q():
    torch.manual_seed(0)
    learner = QMIX(LEARNER_ARGS, n_agents=3, obs_dim=6, n_actions=5, state_dim=9)
    with torch.no_grad():
        learner.agent_net.head.bias[4] = 1e3  # action 4 has by far the largest Q everywhere
    available = torch.rand(64, 3, 5) > 0.5
    available[..., 0] = True
    available[..., 4] = False
    obs, last = torch.randn(64, 3, 6), torch.full((64, 3), -1)
    for epsilon in (0.0, 0.5, 1.0):
        actions, _ = learner.act(obs, available, last, learner.initial_state(64), epsilon)
        assert available.gather(-1, actions.unsqueeze(-1)).all()
    # the target's arg-max (double Q or not) goes through the same masked arg-max
    q = torch.randn(192, 5)
    q[:, 4] = 1e3
    best = masked_argmax(q, available.reshape(-1, 5))
    assert (best != 4).all()


def _filled_buffer(lengths, n_agents=2, obs_dim=3, n_actions=4, capacity=1000, seed=0):
    """A buffer holding one episode per length, stepped through one environment."""
    rng = np.random.default_rng(seed)
    buffer = EpisodeReplayBuffer(capacity, 1, n_agents, obs_dim, 5, n_actions)
    for length in lengths:
        for t in range(length):
            ended = t == length - 1
            final = (
                {0: (rng.normal(size=(n_agents, obs_dim)), rng.normal(size=5), np.ones((n_agents, n_actions), bool))}
                if ended
                else {}
            )
            buffer.add_step(
                rng.normal(size=(1, n_agents, obs_dim)),
                rng.normal(size=(1, 5)),
                rng.random((1, n_agents, n_actions)) > 0.3,
                rng.integers(0, n_actions, (1, n_agents)),
                np.array([float(length)]),
                np.array([float(ended)]),
                np.array([ended]),
                final,
            )
    return buffer


def test_padded_steps_carry_no_loss_and_no_gradient():
    torch.manual_seed(0)
    np.random.seed(0)
    buffer = _filled_buffer([3, 9, 5, 2])
    batch = buffer.sample(8)
    assert batch.mask.shape == batch.reward.shape and batch.obs.shape[1] == batch.mask.shape[1] + 1
    torch.testing.assert_close(batch.mask.sum(1), batch.reward.max(1).values)  # reward = episode length
    learner = QMIX(LEARNER_ARGS, n_agents=2, obs_dim=3, n_actions=4, state_dim=5)
    state = copy.deepcopy(learner.state_dict())

    def loss_and_grads(b):
        learner.load_state_dict(state)
        learner.optimizer.zero_grad()
        info = learner.train(b)
        return info["loss"], [p.clone() for p in learner.params]

    base_loss, base_params = loss_and_grads(batch)
    rows = batch.mask.shape[1] + 1
    real_rows = torch.cat([torch.ones(batch.mask.shape[0], 1), batch.mask], dim=1).bool()  # row t real
    pad = ~real_rows
    garbage = batch._replace(
        obs=torch.where(pad[..., None, None], torch.randn_like(batch.obs) * 100, batch.obs),
        state=torch.where(pad[..., None], torch.randn_like(batch.state) * 100, batch.state),
        actions=torch.where(pad[..., None], torch.randint_like(batch.actions, 4), batch.actions),
        reward=torch.where(batch.mask > 0, batch.reward, torch.randn_like(batch.reward) * 100),
        terminated=torch.where(batch.mask > 0, batch.terminated, torch.ones_like(batch.terminated)),
    )
    assert rows == garbage.obs.shape[1]
    loss, params = loss_and_grads(garbage)
    assert loss == pytest.approx(base_loss, rel=1e-5)
    for a, b in zip(params, base_params):
        torch.testing.assert_close(a, b)


def test_episode_buffer_keeps_episodes_whole_evicts_the_oldest_and_round_trips():
    np.random.seed(0)
    buffer = _filled_buffer([10, 20, 30, 40], capacity=80)
    # rows 11 + 21 + 31 + 41 = 104 > 80: the oldest episodes went, whole
    assert [rows for _, rows in buffer.episodes] == [31, 41]
    batch = buffer.sample(16)
    assert set(batch.mask.sum(1).tolist()) <= {30.0, 40.0}
    torch.testing.assert_close(batch.reward[batch.mask > 0].unique(), torch.tensor([30.0, 40.0]))
    copy = EpisodeReplayBuffer(80, 1, 2, 3, 5, 4)
    copy.load_state_dict(buffer.state_dict())
    np.random.seed(1)
    first = buffer.sample(8)
    np.random.seed(1)
    second = copy.sample(8)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)
    with pytest.raises(Exception, match="raise --buffer_size"):
        _filled_buffer([100], capacity=50)


def test_updates_follow_finished_episodes_or_the_vector_step_schedule():
    from types import SimpleNamespace

    from harl.runners.qmix_runner import QMIXRunner

    per_episodes = SimpleNamespace(episodes_per_update=4, pending_episodes=0)
    due = [QMIXRunner.updates_due(per_episodes, step, finished) for step, finished in enumerate([1, 2, 0, 3, 5, 8], 1)]
    assert due == [0, 0, 0, 1, 1, 2] and per_episodes.pending_episodes == 3  # 19 episodes: 4 updates, 3 carried
    schedule = SimpleNamespace(episodes_per_update=0, train_interval=3, updates_per_train=2)
    assert [QMIXRunner.updates_due(schedule, step, 9) for step in range(1, 7)] == [0, 0, 2, 0, 0, 2]


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["qmix", "vdn"])
def test_train_on_the_masked_heterogeneous_toy_and_discrete_mpe(tmp_path, algo):
    # the toy env raises on an unavailable action, and its agents' observation sizes differ
    runner = train(algo, "toy", str(tmp_path), {**TINY_QMIX, "num_env_steps": 400})
    assert_run_layout(runner.run_dir, 400)
    assert runner.learner.updates > 0
    # the saved weights evaluate again from the run directory (examples/evaluate.py's engine)
    again = evaluate_run(runner.run_dir, eval_episodes=4, eval_seed=0)
    assert again["algo"] == algo and np.isfinite(again["eval_episode_return"])
    runner = train(
        algo, "pettingzoo_mpe", str(tmp_path), {**TINY_QMIX, "num_env_steps": 200, "continuous_actions": False}
    )
    rows = assert_run_layout(runner.run_dir, 200)
    # the epsilon of the last vectorised step, taken at env step 198 of the 200-step anneal
    assert float(rows[-1]["train/epsilon"]) == pytest.approx(1.0 - 0.95 * 198 / 200)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--continuous_actions", "True"], "needs Discrete actions"),
        # MPE episodes last max_cycles 25 steps: 26 rows with the final observation
        (["--continuous_actions", "False", "--buffer_size", "25"], "cannot hold one whole episode"),
    ],
)
def test_box_actions_and_a_buffer_below_one_episode_are_refused_before_anything_is_written(tmp_path, extra, message):
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "train.py"),
            "--algo",
            "qmix",
            "--env",
            "pettingzoo_mpe",
            *extra,
            "--log_dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not os.listdir(tmp_path)


def test_resume_restores_the_episode_buffer_and_the_epsilon_schedule(tmp_path):
    runner = train("qmix", "toy", str(tmp_path), {**TINY_QMIX, "num_env_steps": 160})
    args, algo_args, env_args = parse_train_args(["--resume", runner.run_dir])
    resumed = RUNNER_REGISTRY[args["algo"]](args, algo_args, env_args)
    try:
        assert len(resumed.buffer) == 0 and resumed.epsilon() == 1.0
        resumed.maybe_resume()
        assert len(resumed.buffer) == len(runner.buffer) > 0
        assert list(resumed.buffer.episodes) == list(runner.buffer.episodes)
        np.testing.assert_array_equal(resumed.buffer.ring["obs"], runner.buffer.ring["obs"])
        assert resumed.epsilon() == runner.epsilon() < 1.0
        assert resumed.learner.updates == runner.learner.updates
    finally:
        resumed.close()


def test_sigkill_and_resume_reach_the_end(tmp_path):
    total = 1200
    command = [
        sys.executable,
        os.path.join(ROOT, "examples", "train.py"),
        "--algo",
        "qmix",
        "--env",
        "toy",
        "--exp_name",
        "resume",
        "--log_dir",
        str(tmp_path),
    ]
    for key, value in {**TINY_QMIX, "checkpoint_interval": 80, "num_env_steps": total}.items():
        command += [f"--{key}", str(value).replace(" ", "")]
    run_dir, steps_before, resumed = kill_and_resume(command, str(tmp_path), min_rows=8)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    steps = [int(r["env_steps"]) for r in read_progress(run_dir)]
    assert steps_before < total and steps[-1] == total and steps == sorted(set(steps))
