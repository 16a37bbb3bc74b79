"""The train command fails fast and clearly: a missing environment package and a killed
environment worker each end ``examples/train.py`` non-zero within seconds, with a message that
says what to do (unknown keys are covered in test_cli.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "examples", "train.py")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as file:
            return [int(p) for p in file.read().split()]
    except FileNotFoundError:
        return []


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""


def _env_workers(trainer_pid: int) -> list[int]:
    """Worker processes: children of the trainer's forkserver (or of the trainer itself)."""
    workers = []
    for child in _children(trainer_pid):
        if "resource_tracker" in _cmdline(child):
            continue
        workers += _children(child) if "forkserver" in _cmdline(child) else [child]
    return workers


def test_missing_environment_package_exits_with_the_pip_line(tmp_path):
    # sitecustomize runs at interpreter start-up; a None entry makes "import mpe2" fail exactly
    # as it does when the package is not installed (ModuleNotFoundError naming mpe2)
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text("import sys\nsys.modules['mpe2'] = None\n")
    env = {**os.environ, "PYTHONPATH": str(shadow)}
    start = time.time()
    out = subprocess.run(
        [
            sys.executable,
            TRAIN,
            "--algo",
            "happo",
            "--env",
            "pettingzoo_mpe",
            "--exp_name",
            "x",
            "--log_dir",
            str(tmp_path / "results"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 1
    assert time.time() - start < 60
    assert 'pip install -e ".[mpe]"' in out.stderr
    assert "Traceback" not in out.stderr


def test_killed_env_worker_ends_training_within_seconds(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            TRAIN,
            "--algo",
            "happo",
            "--env",
            "toy",
            "--exp_name",
            "x",
            "--log_dir",
            str(tmp_path),
            "--n_env_workers",
            "2",
            "--n_rollout_threads",
            "2",
            "--num_env_steps",
            "10000000",
            "--use_eval",
            "False",
            "--torch_threads",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 90
        workers: list[int] = []
        while time.time() < deadline and len(workers) < 2:
            workers = _env_workers(proc.pid)
            time.sleep(0.2)
        assert len(workers) >= 2, "the trainer never started its environment workers"
        time.sleep(2.0)  # let training get under way
        os.kill(workers[0], signal.SIGKILL)
        killed_at = time.time()
        _, stderr = proc.communicate(timeout=30)
        assert time.time() - killed_at < 15
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    assert "worker" in stderr and "toy" in stderr
    assert "Traceback" not in stderr
