"""Shared helpers of the end-to-end training tests: tiny configs and a run-directory check."""
from __future__ import annotations

import csv
import glob
import json
import os
from typing import Any

from harl.runners import RUNNER_REGISTRY
from harl.utils.cli import parse_train_args

# Small enough that one run of any algorithm takes seconds on 2 cores.
TINY_ON_POLICY = {
    "n_rollout_threads": 2,
    "episode_length": 20,
    "hidden_sizes": [16, 16],
    "critic_epoch": 2,
    "n_eval_rollout_threads": 2,
    "eval_episodes": 2,
    "eval_interval": 2,
    "log_interval": 1,
    "checkpoint_interval": 2,
    "n_env_workers": 0,
    "torch_threads": 1,
}

# Keys only some algorithms have (an unknown key is an error, by design).
TINY_PER_ALGO = {"happo": {"ppo_epoch": 2}, "mappo": {"ppo_epoch": 2}, "haa2c": {"a2c_epoch": 2}}


def cli_tokens(overrides: dict[str, Any]) -> list[str]:
    """``{"lr": 0.1}`` -> ``["--lr", "0.1"]`` as a user would type them."""
    tokens: list[str] = []
    for key, value in overrides.items():
        tokens += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    return tokens


def train(algo: str, env: str, log_dir: str, overrides: dict[str, Any], extra: list[str] = ()):
    """Train in this process exactly as ``examples/train.py`` would; returns the finished runner."""
    argv = ["--algo", algo, "--env", env, "--exp_name", "test", "--log_dir", log_dir]
    argv += cli_tokens({**TINY_PER_ALGO.get(algo, {}), **overrides}) + list(extra)
    args, algo_args, env_args = parse_train_args(argv)
    runner = RUNNER_REGISTRY[args["algo"]](args, algo_args, env_args)
    try:
        runner.run()
    finally:
        runner.close()
    return runner


def read_progress(run_dir: str) -> list[dict[str, str]]:
    """The rows of a run's ``progress.csv``."""
    with open(os.path.join(run_dir, "progress.csv"), newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def assert_run_layout(run_dir: str, num_env_steps: int) -> list[dict[str, str]]:
    """A finished run holds config.json, TensorBoard events, progress.csv and models/."""
    assert os.path.isfile(os.path.join(run_dir, "config.json"))
    assert glob.glob(os.path.join(run_dir, "logs", "events.out.tfevents.*"))
    assert os.path.isfile(os.path.join(run_dir, "models", "checkpoint.pt"))
    assert os.path.isfile(os.path.join(run_dir, "models", "actor_agent0.pt"))
    rows = read_progress(run_dir)
    assert rows, "progress.csv has no rows"
    assert int(rows[-1]["env_steps"]) == num_env_steps
    assert rows[-1]["eval_episode_return"] != ""
    return rows
