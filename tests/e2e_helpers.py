"""Shared helpers of the end-to-end training tests: tiny configs and a run-directory check."""

from __future__ import annotations

import csv
import glob
import json
import os
from typing import Any

from harl.cli import parse_train_args
from harl.runners import RUNNER_REGISTRY

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

TINY_OFF_POLICY = {
    "n_rollout_threads": 2,
    "hidden_sizes": [16, 16],
    "warmup_steps": 40,
    "train_interval": 5,
    "update_per_train": 0.2,
    "batch_size": 16,
    "buffer_size": 2000,
    "n_step": 3,
    "n_eval_rollout_threads": 2,
    "eval_episodes": 2,
    "eval_interval": 20,
    "checkpoint_interval": 40,
    "n_env_workers": 0,
    "torch_threads": 1,
}

# QMIX and VDN (episode replay, recurrent agent network).
TINY_QMIX = {
    "num_env_steps": 120,
    "n_rollout_threads": 2,
    "hidden_sizes": [16],
    "mixing_embed_dim": 8,
    "hypernet_embed": 16,
    "batch_episodes": 4,
    "buffer_size": 2000,
    "train_interval": 4,
    "update_per_train": 0.5,
    "target_update_interval": 5,
    "epsilon_anneal_steps": 200,
    "n_eval_rollout_threads": 2,
    "eval_episodes": 2,
    "eval_interval": 20,
    "checkpoint_interval": 40,
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


def kill_and_resume(command: list[str], run_root: str, min_rows: int, timeout_s: float = 120.0):
    """Start ``command`` (an ``examples/train.py`` run writing under ``run_root``), SIGKILL its
    process group once ``progress.csv`` has ``min_rows`` rows, then resume it to the end.

    Returns ``(run_dir, env steps logged before the kill, the resume's CompletedProcess)``.
    """
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    run_dir = None
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        found = [d for d, _, files in os.walk(run_root) if "progress.csv" in files]
        if found and len(read_progress(found[0])) >= min_rows:
            run_dir = found[0]
            break
        time.sleep(0.2)
    tail = proc.stderr.read().decode()[-2000:] if run_dir is None and proc.poll() is not None else "timeout"
    assert run_dir is not None, f"run did not reach {min_rows} rows: {tail}"
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its env workers, as an OOM kill would
    proc.wait(timeout=10)
    steps_before = int(read_progress(run_dir)[-1]["env_steps"])
    train_py = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "train.py")
    resumed = subprocess.run(
        [sys.executable, train_py, "--resume", run_dir], capture_output=True, text=True, timeout=300
    )
    return run_dir, steps_before, resumed


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
    with open(os.path.join(run_dir, "learning_curve.png"), "rb") as picture:
        assert picture.read(8) == b"\x89PNG\r\n\x1a\n"
    rows = read_progress(run_dir)
    assert rows, "progress.csv has no rows"
    assert int(rows[-1]["env_steps"]) == num_env_steps
    assert rows[-1]["eval_episode_return"] != ""
    return rows


HEAVY_PACKAGES = ("torch", "jax", "tensorboard")


def heavy_import_recorder(
    folder: str, preamble: str = "", env: dict[str, str] | None = None
) -> tuple[dict[str, str], str]:
    """A subprocess environment (``env``, default ``os.environ``, with ``folder`` first on
    PYTHONPATH) whose interpreter runs ``folder/sitecustomize.py`` at start-up: ``preamble``,
    then, at exit, it writes which of :data:`HEAVY_PACKAGES` were imported to
    ``folder/imported.txt``. Returns the environment and that file's path.

    "Exits before importing torch" is what makes a missing-requirement error come in a moment
    on any machine; a wall-clock bound alone tells that apart only on an idle one (importing
    torch takes ~1 s idle, several on a loaded 2-core machine, as can a cold start of Python)."""
    os.makedirs(folder, exist_ok=True)
    record = os.path.join(folder, "imported.txt")
    with open(os.path.join(folder, "sitecustomize.py"), "w", encoding="utf-8") as file:
        file.write(
            preamble + "\nimport atexit as _atexit, sys as _sys\n\n\n"
            "def _record_heavy_imports():\n"
            f"    with open({record!r}, 'w', encoding='utf-8') as out:\n"
            f"        out.write(' '.join(m for m in {HEAVY_PACKAGES!r} if m in _sys.modules))\n\n\n"
            "_atexit.register(_record_heavy_imports)\n"
        )
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [folder, env.get("PYTHONPATH")]))
    return env, record
