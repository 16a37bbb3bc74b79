"""End-to-end HAQO on the off-policy HA runner: MPE continuous and discrete, Multi-Agent MuJoCo,
action masks on the toy env, the simultaneous ablation, the Gaussian ablation, the KL bound in
every logged window, and resume."""

from __future__ import annotations

import pytest
import torch
from e2e_helpers import TINY_OFF_POLICY, assert_run_layout, read_progress, train

from harl.cli import parse_train_args
from harl.runners import RUNNER_REGISTRY

TINY_HAQO = {**TINY_OFF_POLICY, "n_timesteps": 4, "num_env_steps": 120}


def _kl_maxima(run_dir: str) -> list[float]:
    rows = read_progress(run_dir)
    columns = [c for c in rows[0] if c.endswith("/kl_max")]
    assert columns, "progress.csv must carry the per-agent realised KL maxima"
    return [float(r[c]) for r in rows for c in columns if r[c] != ""]


@pytest.mark.parametrize("continuous", [True, False])
def test_mpe_simple_spread(tmp_path, continuous):
    runner = train("haqo", "pettingzoo_mpe", str(tmp_path), {**TINY_HAQO, "continuous_actions": continuous})
    assert_run_layout(runner.run_dir, 120)
    maxima = _kl_maxima(runner.run_dir)
    assert maxima and max(maxima) <= runner.flat_args["kl_threshold"]


def test_mamujoco_halfcheetah(tmp_path):
    runner = train("haqo", "mamujoco", str(tmp_path), {**TINY_HAQO, "episode_limit": 30})
    assert_run_layout(runner.run_dir, 120)


@pytest.mark.parametrize(
    "extra",
    [
        {"sequential": False},
        {"actor": "gaussian"},
        {"drift": "none", "q_transform": "qcut", "chosen": 2, "train_candidates": 4},
        {"enumerate_discrete": True},
    ],
)
def test_toy_masks_and_ablations(tmp_path, extra):
    """The toy env raises on an unavailable action, so finishing proves every executed action
    (warm-up, behaviour candidates, evaluation) respected the availability masks."""
    runner = train("haqo", "toy", str(tmp_path), {**TINY_HAQO, "continuous_agent": True, **extra})
    assert_run_layout(runner.run_dir, 120)


def test_resume_restores_actors_critic_and_buffer(tmp_path):
    runner = train("haqo", "toy", str(tmp_path), TINY_HAQO)
    args, algo_args, env_args = parse_train_args(["--resume", runner.run_dir])
    resumed = RUNNER_REGISTRY["haqo"](args, algo_args, env_args)
    try:
        resumed.maybe_resume()
        assert len(resumed.buffer) == len(runner.buffer)
        for saved, loaded in zip(runner.actor, resumed.actor):
            for p, q in zip(saved.actor.parameters(), loaded.actor.parameters()):
                assert (p == q).all()
    finally:
        resumed.close()


def test_policy_freq_delays_the_actor_rounds(tmp_path):
    """``policy_freq 2``: the critic (and its targets) every update, the actors every second."""
    runner = train("haqo", "toy", str(tmp_path), {**TINY_HAQO, "policy_freq": 2})
    start = runner.total_it
    infos = [runner.train() for _ in range(4)]
    assert all("critic/critic_loss" in info for info in infos)
    assert ["agent0/loss_qv" in info for info in infos] == [(start + j) % 2 == 0 for j in range(1, 5)]


def test_actor_round_updates_the_actors_and_leaves_the_critic(tmp_path):
    """``actor_round`` (what ``benchmarks/actor_catch_up.py`` runs against a frozen critic)."""
    runner = train("haqo", "toy", str(tmp_path), {**TINY_HAQO, "enumerate_discrete": True})
    critic = [p.detach().clone() for p in runner.critic.critic.parameters()]
    actors = [p.detach().clone() for actor in runner.actor for p in actor.actor.parameters()]
    info = runner.actor_round(runner.buffer.sample().to(runner.device))
    assert all(f"agent{i}/loss_qv" in info for i in range(runner.num_agents)) and "critic/critic_loss" not in info
    assert all(torch.equal(a, b) for a, b in zip(critic, runner.critic.critic.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(actors, (p for a in runner.actor for p in a.actor.parameters())))


@pytest.mark.parametrize("actor_q", ["min", "mean"])
def test_actor_round_scores_candidates_with_actor_q(tmp_path, actor_q):
    """``actor_q`` reaches the actor round's scoring of the candidates (and only it: the TD
    target keeps the spec's min)."""
    runner = train("haqo", "toy", str(tmp_path), {**TINY_HAQO, "enumerate_discrete": True, "actor_q": actor_q})
    seen = []
    min_q_fn = runner.critic.min_q_fn

    def recording(*args, **kwargs):
        seen.append(kwargs.get("combine", args[3] if len(args) > 3 else "min"))
        return min_q_fn(*args, **kwargs)

    runner.critic.min_q_fn = recording
    runner.actor_round(runner.buffer.sample().to(runner.device))
    assert seen == [actor_q]


def test_same_seed_same_run(tmp_path):
    """Same seed and config, same run on CPU: returns and every HAQO diagnostic but the timings."""
    overrides = {**TINY_HAQO, "enumerate_discrete": True, "policy_freq": 2}
    first = read_progress(train("haqo", "toy", str(tmp_path / "a"), overrides).run_dir)
    second = read_progress(train("haqo", "toy", str(tmp_path / "b"), overrides).run_dir)
    columns = [c for c in first[0] if not c.startswith("time") and c not in ("wall_time", "fps")]
    assert any(first[-1][c] for c in columns if c.endswith("/loss_qv")), "the run must have trained its actors"
    assert [[r[c] for c in columns] for r in first] == [[r[c] for c in columns] for r in second]


def test_evaluation_leaves_the_training_run_unchanged(tmp_path):
    """Evaluation samples from its own generators: other evaluation settings, same training."""
    base = {**TINY_HAQO, "enumerate_discrete": True}
    first = read_progress(train("haqo", "toy", str(tmp_path / "a"), base).run_dir)
    second = read_progress(
        train("haqo", "toy", str(tmp_path / "b"), {**base, "eval_episodes": 5, "eval_samples": 3}).run_dir
    )
    unevaluated = read_progress(train("haqo", "toy", str(tmp_path / "c"), {**base, "use_eval": False}).run_dir)
    columns = [c for c in first[0] if c.endswith(("/loss_qv", "/kl", "critic_loss")) or c == "train_episode_return"]
    assert any(first[-1][c] for c in columns if c.endswith("/loss_qv")), "the run must have trained its actors"
    training = [[r[c] for c in columns] for r in first]
    assert training == [[r[c] for c in columns] for r in second] == [[r[c] for c in columns] for r in unevaluated]
    assert [r["eval_episode_return"] for r in first] != [r["eval_episode_return"] for r in second]
