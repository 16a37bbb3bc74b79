"""examples/evaluate.py: a finished run's saved policy is evaluated again from its own config,
reproducibly, and a directory that is not a run is a clear error."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_helpers import TINY_OFF_POLICY, TINY_ON_POLICY, TINY_QMIX, train

from harl.utils.errors import ConfigError

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "evaluate.py"
spec = importlib.util.spec_from_file_location("evaluate_script", SCRIPT)
evaluate_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(evaluate_script)


@pytest.mark.parametrize(
    "algo, overrides",
    [
        ("happo", {**TINY_ON_POLICY, "num_env_steps": 80}),
        ("haqo", {**TINY_OFF_POLICY, "n_timesteps": 4, "num_env_steps": 120}),
    ],
)
def test_evaluates_the_saved_policy_with_the_runs_settings(tmp_path, algo, overrides):
    runner = train(algo, "pettingzoo_mpe", str(tmp_path / "runs"), {**overrides, "max_cycles": 10})
    first = evaluate_script.evaluate_run(runner.run_dir, 4, 7)
    again = evaluate_script.evaluate_run(runner.run_dir, 4, 7)
    assert first["algo"] == algo and first["task"] == runner.task_name and first["train_seed"] == 1
    assert first["eval_episode_return"] == again["eval_episode_return"] < 0  # same seed, same episodes
    other_seed = evaluate_script.evaluate_run(runner.run_dir, 4, 8)
    assert other_seed["eval_episode_return"] != first["eval_episode_return"]


@pytest.mark.parametrize(
    "algo, overrides",
    [
        ("happo", {**TINY_ON_POLICY, "num_env_steps": 80}),
        ("haqo", {**TINY_OFF_POLICY, "n_timesteps": 4, "num_env_steps": 120}),
        # the schedule's end at 1.0: a uniformly random behaviour policy, far from the greedy one
        ("qmix", {**TINY_QMIX, "num_env_steps": 120, "continuous_actions": False, "epsilon_finish": 1.0}),
    ],
)
def test_stochastic_evaluation_acts_as_in_training_reproducibly(tmp_path, algo, overrides):
    runner = train(algo, "pettingzoo_mpe", str(tmp_path / "runs"), {**overrides, "max_cycles": 10})
    deterministic = evaluate_script.evaluate_run(runner.run_dir, 4, 7)
    sampled = evaluate_script.evaluate_run(runner.run_dir, 4, 7, explore=True)
    assert sampled == evaluate_script.evaluate_run(runner.run_dir, 4, 7, explore=True)
    assert sampled["eval_episode_return"] != deterministic["eval_episode_return"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), runner.run_dir, "--eval_episodes", "4", "--eval_seed", "7", "--stochastic"],
        capture_output=True,
        text=True,
        check=True,
    )
    row = result.stdout.splitlines()[-1].split(" | ")
    assert row[3] == "sampled" and float(row[5]) == pytest.approx(sampled["eval_episode_return"], abs=0.006)


def test_a_directory_without_a_run_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        evaluate_script.evaluate_run(str(tmp_path), 4, 7)
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "no config.json" in result.stderr


def test_a_run_without_final_weights_is_evaluated_from_its_checkpoint(tmp_path, capsys):
    runner = train(
        "happo", "pettingzoo_mpe", str(tmp_path / "runs"), {**TINY_ON_POLICY, "num_env_steps": 80, "max_cycles": 10}
    )
    final = evaluate_script.evaluate_run(runner.run_dir, 4, 7)
    models = Path(runner.run_dir) / "models"
    for weights in models.glob("*_agent*.pt"):
        weights.unlink()  # as if the run had been killed after its last checkpoint
    from_checkpoint = evaluate_script.evaluate_run(runner.run_dir, 4, 7)
    assert "evaluating models/checkpoint.pt" in capsys.readouterr().err
    # the last checkpoint is written at the end too: the same policy, the same episodes
    assert from_checkpoint["eval_episode_return"] == final["eval_episode_return"]
    (models / "checkpoint.pt").unlink()
    with pytest.raises(ConfigError, match="has no weights to evaluate"):
        evaluate_script.evaluate_run(runner.run_dir, 4, 7)


def test_rebuilt_runner_without_weights_keeps_fresh_networks(tmp_path):
    """``load_weights=False`` (``benchmarks/actor_catch_up.py --fresh_actors``): the run's
    settings, newly initialised networks, and the actor's width may then differ from the run's."""
    import torch

    from harl.experiments.evaluation import rebuilt_runner

    overrides = {**TINY_OFF_POLICY, "n_timesteps": 4, "num_env_steps": 120, "max_cycles": 10}
    runner = train("haqo", "pettingzoo_mpe", str(tmp_path / "runs"), overrides)
    trained = [p.detach().clone() for p in runner.actor[0].actor.parameters()]
    with rebuilt_runner(runner.run_dir, 2, 7) as loaded:
        assert all(torch.equal(a, b) for a, b in zip(trained, loaded.actor[0].actor.parameters()))
    with rebuilt_runner(runner.run_dir, 2, 7, load_weights=False) as fresh:
        assert not all(torch.equal(a, b) for a, b in zip(trained, fresh.actor[0].actor.parameters()))
    wider = ("--hidden_sizes", "[32,32]", "--critic_hidden_sizes", "[16,16]")
    with rebuilt_runner(runner.run_dir, 2, 7, overrides=wider, load_weights=False) as fresh:
        widths = {p.shape[0] for p in fresh.actor[0].actor.parameters() if p.dim() == 2}
        assert 32 in widths and 16 not in widths
        fresh.critic.load_state_dict(runner.critic.state_dict())  # the run's critic still fits
