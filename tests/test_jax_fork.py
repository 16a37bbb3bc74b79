"""No process that has imported JAX forks: JAX is multithreaded, and a fork of it can deadlock.

JAX says so itself with a RuntimeWarning from an at-fork hook ("os.fork() was called ..."); these
tests run SMAX the ways a user does (a two-worker sweep, a run with environment worker
processes) and look for that warning in everything the processes print.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jaxmarl")

from harl.cli import parse_train_args  # noqa: E402
from harl.utils.configs_tools import save_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FORK_WARNING = "os.fork() was called"
TINY_SMAX = [
    "--map_name",
    "3m",
    "--n_rollout_threads",
    "2",
    "--episode_length",
    "20",
    "--hidden_sizes",
    "[16, 16]",
    "--critic_epoch",
    "1",
    "--ppo_epoch",
    "1",
    "--eval_interval",
    "2",
    "--eval_episodes",
    "2",
    "--n_eval_rollout_threads",
    "2",
    "--log_interval",
    "1",
    "--checkpoint_interval",
    "2",
    "--torch_threads",
    "1",
]


def test_the_warning_looked_for_is_the_one_jax_prints_on_fork():
    """The control: a process that imported JAX and forks prints the text the tests look for."""
    code = (
        "import os, jax; jax.numpy.zeros(1).block_until_ready(); pid = os.fork()\n"
        "if pid == 0: os._exit(0)\nos.waitpid(pid, 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert FORK_WARNING in result.stderr


@pytest.mark.slow  # about a minute (two SMAX runs compiling beside each other); -m slow runs it
def test_an_smax_sweep_on_two_workers_never_forks_jax(tmp_path):
    args, algo_args, env_args = parse_train_args(["--algo", "happo", "--env", "smax", *TINY_SMAX])
    tuned = tmp_path / "tuned" / "smax" / "3m" / "happo"
    tuned.mkdir(parents=True)
    save_config(args, algo_args, env_args, str(tuned))
    experiment = tmp_path / "smax.yaml"
    experiment.write_text(
        "name: smaxfork\ntitle: SMAX fork\nmetric: win_rate\nseeds: [1, 2]\nalgorithms: [happo]\n"
        "tuned_dir: tuned\ntasks:\n  - {env: smax, task: 3m, label: 3m, paper: {}}\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "examples/reproduce.py",
            str(experiment),
            "--workers",
            "2",
            "--num_env_steps",
            "80",
            "--log_dir",
            str(tmp_path / "results"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    logs = "".join(p.read_text() for p in sorted((tmp_path / "results" / "sweep_logs").rglob("*.log")))
    assert result.returncode == 0, result.stderr + logs
    assert "2/2 finished" in result.stderr
    assert FORK_WARNING not in result.stdout + result.stderr + logs


def test_an_smax_run_with_environment_worker_processes_never_forks_jax(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "examples/train.py",
            "--algo",
            "happo",
            "--env",
            "smax",
            *TINY_SMAX,
            "--batched_step",
            "False",
            "--n_env_workers",
            "2",
            "--num_env_steps",
            "80",
            "--log_dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "environments step in 2 worker processes" in result.stderr
    assert FORK_WARNING not in result.stdout + result.stderr
