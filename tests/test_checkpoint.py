"""Atomic checkpoint writes, checkpoint loading errors, RNG capture/restore, seeding, device."""

import logging
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from harl.utils import checkpoint
from harl.utils.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    capture_rng_state,
    checkpoint_path,
    find_run_config,
    isolated_rng,
    load_checkpoint,
    restore_rng_state,
)
from harl.utils.envs_tools import available_cpu_count, get_device, set_seed
from harl.utils.errors import ConfigError


def draws():
    return (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())


def test_atomic_save_round_trip(tmp_path):
    path = tmp_path / "models" / "checkpoint.pt"
    state = {"weights": torch.arange(5.0), "episode": 3, "wall_time": 1.5}
    atomic_torch_save(state, path)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"], state["weights"]) and loaded["episode"] == 3
    assert os.listdir(path.parent) == ["checkpoint.pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("failing", ["replace", "fsync", "save"])
def test_failed_write_keeps_old_checkpoint_and_no_temp(tmp_path, monkeypatch, failing):
    path = tmp_path / "checkpoint.pt"
    atomic_torch_save({"version": 1}, path)

    def boom(*args, **kwargs):
        raise OSError("simulated crash")

    if failing == "save":

        def partial_save(obj, file):
            file.write(b"half a checkpoint")
            boom()

        monkeypatch.setattr(checkpoint.torch, "save", partial_save)
    else:
        monkeypatch.setattr(checkpoint.os, failing, boom)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_torch_save({"version": 2, "big": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["checkpoint.pt"]
    assert load_checkpoint(path) == {"version": 1}


def test_writer_killed_mid_write_leaves_old_checkpoint(tmp_path):
    """SIGKILL while the temporary file is written: the checkpoint itself stays intact."""
    path = tmp_path / "checkpoint.pt"
    atomic_torch_save({"version": 1}, path)
    script = (
        "import os, sys, time, torch\n"
        "from harl.utils import checkpoint\n"
        "def stalled_fsync(fd):\n"
        "    print('written', flush=True)\n"
        "    time.sleep(60)\n"
        "checkpoint.os.fsync = stalled_fsync\n"
        "state = {'version': 2, 'big': torch.zeros(100000)}\n"
        f"checkpoint.atomic_torch_save(state, {str(path)!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert load_checkpoint(path) == {"version": 1}


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt|unreadable"):
        load_checkpoint(garbage)
    good = tmp_path / "good.pt"
    atomic_torch_save({"w": torch.ones(10000)}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        load_checkpoint(truncated)


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "numpy.pt"
    atomic_torch_save({"array": np.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)
    assert load_checkpoint(path, weights_only=False)["array"].shape == (3,)


def test_rng_capture_restore_reproduces_draws(tmp_path):
    set_seed(123)
    draws()  # move away from the seeded state
    state = capture_rng_state()
    expected = draws()
    draws()
    restore_rng_state(state)
    assert draws() == expected
    # also through a checkpoint file loaded with weights_only=True
    atomic_torch_save({"rng": state}, tmp_path / "rng.pt")
    draws()
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert draws() == expected


def test_isolated_rng_draws_its_own_stream_and_restores_the_outer_one():
    set_seed(5)
    state = capture_rng_state()
    expected_outer = draws()
    restore_rng_state(state)
    with isolated_rng(99):
        inner = draws()
    assert draws() == expected_outer
    with isolated_rng(99):
        assert draws() == inner
    with pytest.raises(RuntimeError), isolated_rng(3):
        raise RuntimeError("the block fails")
    restore_rng_state(state)
    draws()
    assert draws() != expected_outer  # the outer stream really moves on outside the block


def test_set_seed_is_reproducible():
    set_seed(7)
    first = draws()
    set_seed(7)
    assert draws() == first
    assert os.environ["PYTHONHASHSEED"] == "7"


def test_get_device_cpu_and_thread_cap(caplog):
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="harl.utils.envs_tools"):
            device = get_device(
                cuda=torch.cuda.is_available(), cuda_deterministic=True, torch_threads=available_cpu_count() + 7
            )
        assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
        assert torch.get_num_threads() == available_cpu_count()
        assert "capped" in caplog.text
        assert get_device(cuda=False, cuda_deterministic=False, torch_threads=1).type == "cpu"
        assert torch.get_num_threads() == 1
        with pytest.raises(ConfigError, match="torch_threads must be at least 1"):
            get_device(cuda=False, cuda_deterministic=False, torch_threads=0)
    finally:
        torch.set_num_threads(before)


def test_find_run_config(tmp_path):
    (tmp_path / "models").mkdir()
    config = tmp_path / "config.json"
    config.write_text("{}")
    for given in (tmp_path, tmp_path / "models", config):
        assert find_run_config(given) == str(config)
    assert checkpoint_path(tmp_path) == str(tmp_path / "models" / "checkpoint.pt")
    with pytest.raises(ConfigError, match="not a run directory"):
        find_run_config(tmp_path / "models" / "elsewhere")
