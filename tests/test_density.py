"""Weight snapshots (keep_snapshots) and visitation densities (harl/experiments/density.py,
examples/plot_density.py) on the coverage tasks."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from e2e_helpers import TINY_OFF_POLICY, TINY_ON_POLICY, train

from harl.experiments.density import group_visitations, held_shares, plot_densities, weight_dirs
from harl.experiments.evaluation import evaluate_run
from harl.utils.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "algo, overrides, snapshot_steps",
    [
        # off-policy: checkpoint_interval in env steps (40); on-policy: in episodes of 2 x 20 steps (2)
        ("haqo", {**TINY_OFF_POLICY, "n_timesteps": 2}, [40, 80, 120]),
        ("happo", TINY_ON_POLICY, [80]),
    ],
)
def test_snapshots_keep_each_checkpoints_weights_and_evaluate_like_the_final_ones(
    tmp_path, algo, overrides, snapshot_steps
):
    runner = train(
        algo,
        "occupation",
        str(tmp_path),
        {**overrides, "num_env_steps": 120, "episode_limit": 10, "keep_snapshots": True},
    )
    found = weight_dirs(runner.run_dir)
    assert sorted(found) == sorted({*snapshot_steps, 120})
    assert found[120] == os.path.join(runner.run_dir, "models")  # the final weights stand for the last step
    snapshot = os.path.join(runner.run_dir, "models", "snapshots", f"step_{snapshot_steps[-1]}")
    assert sorted(os.listdir(snapshot)) == sorted(
        f for f in os.listdir(os.path.join(runner.run_dir, "models")) if f.endswith(".pt") and f != "checkpoint.pt"
    )
    if snapshot_steps[-1] == 120:  # the last checkpoint's snapshot holds the final weights
        assert evaluate_run(runner.run_dir, 2, 3, snapshot) == evaluate_run(runner.run_dir, 2, 3)


def test_without_keep_snapshots_no_snapshot_is_written(tmp_path):
    runner = train(
        "haqo",
        "occupation",
        str(tmp_path),
        {**TINY_OFF_POLICY, "n_timesteps": 2, "num_env_steps": 80, "episode_limit": 10},
    )
    assert not os.path.exists(os.path.join(runner.run_dir, "models", "snapshots"))
    assert list(weight_dirs(runner.run_dir)) == [80]


def test_visitation_pools_seeds_and_counts_positions_in_targets(tmp_path):
    runs = [
        train(
            "haqo",
            "occupation",
            str(tmp_path),
            {**TINY_OFF_POLICY, "n_timesteps": 2, "num_env_steps": 80, "episode_limit": 10, "keep_snapshots": True},
            extra=["--seed", str(seed)],
        ).run_dir
        for seed in (1, 2)
    ]
    visitations = group_visitations(runs, episodes=2, eval_seed=5)
    assert [v.step for v in visitations] == [40, 80]
    # 2 runs x (at least 2 episodes x 10 steps, over 2 eval envs) x 4 agents
    assert all(v.positions.shape[1] == 2 and v.positions.shape[0] >= 2 * 2 * 10 * 4 for v in visitations)
    assert visitations[0].targets.shape == (4, 2) and visitations[0].hold_radius == 0.2
    assert [v.step for v in group_visitations(runs, episodes=2, eval_seed=5, max_points=1)] == [80]  # the last
    # shares: exactly the positions within the radius of each target
    v = visitations[-1]
    v.positions = np.concatenate([v.targets[:1] + [0.1, 0.0], v.targets[1:2] + [0.3, 0.0]])
    assert held_shares(v).tolist() == [0.5, 0.0, 0.0, 0.0]
    path = tmp_path / "density.png"
    plot_densities({"haqo": visitations}, "test", str(path))
    assert path.stat().st_size > 1000


def test_density_of_an_env_without_targets_or_weights_is_a_clear_error(tmp_path):
    runner = train("haqo", "toy", str(tmp_path), {**TINY_OFF_POLICY, "n_timesteps": 2, "num_env_steps": 80})
    with pytest.raises(ConfigError, match="no target regions"):
        group_visitations([runner.run_dir], episodes=1, eval_seed=0)
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "examples", "plot_density.py"),
            str(tmp_path),
            "--out",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "seed-* runs" in result.stderr and "Traceback" not in result.stderr
