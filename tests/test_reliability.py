"""Runs stop cleanly: at the first NaN or infinity (nothing non-finite trained on or saved), on
SIGTERM/SIGINT (a final checkpoint, then ``--resume`` finishes the run), and a finished or
non-finite checkpoint is refused on resume."""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from e2e_helpers import TINY_OFF_POLICY, TINY_ON_POLICY, read_progress, train

from harl.algorithms.critics.continuous_q_critic import ContinuousQCritic
from harl.algorithms.critics.v_critic import VCritic
from harl.runners.base_runner import BaseRunner
from harl.utils.checkpoint import CheckpointError, atomic_torch_save, checkpoint_path, load_checkpoint
from harl.utils.errors import ConfigError
from harl.utils.finite import NonFiniteError, blame, guarded_step, non_finite_entries, torch_refusals_as_non_finite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(ROOT, "examples", "train.py")

TINY = {
    "happo": {**TINY_ON_POLICY, "num_env_steps": 2 * 20 * 6},
    "hasac": {**TINY_OFF_POLICY, "num_env_steps": 200},
    "haqo": {**TINY_OFF_POLICY, "n_timesteps": 4, "num_env_steps": 200},
}


# --- the guard itself -------------------------------------------------------------------------


def test_guarded_step_never_steps_on_a_non_finite_loss():
    layer = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = [p.clone() for p in layer.parameters()]
    loss = layer(torch.ones(2, 3)).sum() * float("nan")
    loss.backward()
    with pytest.raises(NonFiniteError, match="the critic loss is nan"):
        guarded_step(optimizer, loss, "critic")
    assert all(torch.equal(p, q) for p, q in zip(before, layer.parameters()))


def test_guarded_step_reports_parameters_made_non_finite():
    layer = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=float("inf"))
    loss = layer(torch.ones(2, 3)).sum()
    loss.backward()
    with pytest.raises(NonFiniteError, match="actor parameters became non-finite"):
        guarded_step(optimizer, loss, "actor")


def test_torch_refusals_of_non_finite_outputs_become_non_finite_errors():
    with pytest.raises(NonFiniteError, match=r"agent 1: the policy's output is not finite \(Expected parameter loc"):
        with blame("agent 1"):
            torch.distributions.Normal(torch.tensor([math.nan]), torch.ones(1), validate_args=True)
    with pytest.raises(NonFiniteError, match="agent 0: the policy's action probabilities"):
        with blame("agent 0"):
            torch.multinomial(torch.tensor([[math.nan, 1.0]]), 1)
    with pytest.raises(ValueError, match="unrelated"):  # anything else passes through
        with blame("agent 0"):
            raise ValueError("unrelated")
    with pytest.raises(RuntimeError, match="shape mismatch"):  # not a NonFiniteError
        with torch_refusals_as_non_finite():
            raise RuntimeError("shape mismatch")
    with pytest.raises(NonFiniteError, match="action probabilities"):
        with torch_refusals_as_non_finite():
            torch.multinomial(torch.tensor([[math.nan, 1.0]]), 1)


def test_non_finite_entries_check_large_buffers_in_chunks_and_find_a_nan_anywhere(monkeypatch):
    import harl.utils.finite as finite

    monkeypatch.setattr(finite, "_FINITE_CHUNK", 7)
    ring = np.zeros((5, 6), np.float32)  # 30 elements: chunks of 7, the last one short
    assert non_finite_entries({"ring": torch.from_numpy(ring), "array": ring, "ids": np.arange(4)}) == []
    for flat_index in (0, 6, 7, 29):
        bad = ring.copy()
        bad.reshape(-1)[flat_index] = np.inf
        assert non_finite_entries({"ring": torch.from_numpy(bad), "array": bad[:, ::2]}) == (
            ["ring", "array"] if flat_index % 2 == 0 else ["ring"]
        )


def test_non_finite_entries_name_the_paths():
    state = {
        "critic": {"w": torch.tensor([1.0, math.inf]), "steps": torch.tensor([3])},
        "buffer": [torch.zeros(2), torch.tensor([math.nan])],
        "alpha": math.nan,
        "name": "x",
    }
    assert sorted(non_finite_entries(state)) == ["alpha", "buffer/1", "critic/w"]


# --- NaN injected into training ---------------------------------------------------------------


def _arm_after_first_checkpoint(monkeypatch) -> dict[str, bool]:
    """A flag that turns true once the run has written its first checkpoint, so the injected
    failure has a last good checkpoint to keep."""
    armed = {"on": False}
    save = BaseRunner.save_checkpoint

    def save_then_arm(self, progress):
        save(self, progress)
        armed["on"] = True

    monkeypatch.setattr(BaseRunner, "save_checkpoint", save_then_arm)
    return armed


def _inject_nan_loss(monkeypatch, algo: str, armed: dict[str, bool]) -> None:
    if algo == "happo":
        original = VCritic.cal_value_loss

        def nan_value_loss(self, *args, **kwargs):
            loss = original(self, *args, **kwargs)
            return loss * math.nan if armed["on"] else loss

        monkeypatch.setattr(VCritic, "cal_value_loss", nan_value_loss)
    else:  # the centralised Q critic of HASAC and HAQO
        original_td = ContinuousQCritic._td_loss

        def nan_td_loss(self, error):
            loss = original_td(self, error)
            return loss * math.nan if armed["on"] else loss

        monkeypatch.setattr(ContinuousQCritic, "_td_loss", nan_td_loss)


def _inject_nan_parameter(monkeypatch, armed: dict[str, bool]) -> None:
    """The first optimiser step after the first checkpoint leaves a NaN in its parameters."""
    original = torch.optim.Adam.step

    def step_then_poison(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if armed["on"]:
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = math.nan
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_poison)


@pytest.mark.parametrize("algo", ["happo", "hasac", "haqo"])
@pytest.mark.parametrize("where", ["loss", "parameter"])
def test_a_nan_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch, algo, where):
    armed = _arm_after_first_checkpoint(monkeypatch)
    if where == "loss":
        _inject_nan_loss(monkeypatch, algo, armed)
    else:
        _inject_nan_parameter(monkeypatch, armed)
    overrides = {**TINY[algo], "checkpoint_interval": 1 if algo == "happo" else 40}
    with pytest.raises(NonFiniteError) as info:
        train(algo, "pettingzoo_mpe", str(tmp_path), overrides)
    message = str(info.value)
    assert message.startswith("training stopped at env step ")
    assert "Nothing non-finite was saved; the last checkpoint, at " in message
    expected = "loss is nan" if where == "loss" else "parameters became non-finite"
    assert expected in message
    (run_dir,) = [d for d, _, files in os.walk(tmp_path) if "config.json" in files]
    state = load_checkpoint(checkpoint_path(run_dir))
    assert non_finite_entries(state) == []
    assert f"at {state['total_steps']:,} env steps" in message
    assert not os.path.exists(os.path.join(run_dir, "models", "actor_agent0.pt"))  # no final weights


@pytest.mark.parametrize("algo", ["happo", "hasac"])
def test_a_diverging_learning_rate_is_reported_not_a_torch_traceback(tmp_path, algo):
    with pytest.raises(NonFiniteError, match=r"training stopped at env step .*lr 1e\+30"):
        train(algo, "pettingzoo_mpe", str(tmp_path), {**TINY[algo], "lr": 1e30})


def test_the_command_line_prints_one_paragraph_and_exits_1(tmp_path):
    command = [
        sys.executable,
        TRAIN_PY,
        "--algo",
        "happo",
        "--env",
        "toy",
        "--exp_name",
        "nan",
        "--log_dir",
        str(tmp_path),
        "--num_env_steps",
        "400",
        "--n_rollout_threads",
        "2",
        "--episode_length",
        "20",
        "--critic_lr",
        "1e30",
        "--checkpoint_interval",
        "1",
        "--n_env_workers",
        "0",
        "--torch_threads",
        "1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "error (NonFiniteError): training stopped at env step" in done.stderr


# --- stop signals -----------------------------------------------------------------------------


def _train_command(algo: str, log_dir: str, total: int) -> list[str]:
    common = [
        "--env",
        "toy",
        "--exp_name",
        "signal",
        "--log_dir",
        log_dir,
        "--num_env_steps",
        str(total),
        "--n_rollout_threads",
        "2",
        "--hidden_sizes",
        "[16, 16]",
        "--n_env_workers",
        "0",
        "--torch_threads",
        "1",
        "--eval_episodes",
        "2",
        "--n_eval_rollout_threads",
        "2",
    ]
    if algo == "happo":
        extra = [
            "--episode_length",
            "20",
            "--ppo_epoch",
            "2",
            "--log_interval",
            "1",
            "--eval_interval",
            "50",
            "--checkpoint_interval",
            "1000",
        ]
    else:  # a checkpoint interval longer than the run: only the signal's checkpoint exists
        extra = [
            "--warmup_steps",
            "40",
            "--train_interval",
            "5",
            "--update_per_train",
            "0.2",
            "--batch_size",
            "16",
            "--buffer_size",
            "4000",
            "--eval_interval",
            "20",
            "--checkpoint_interval",
            str(10 * total),
        ]
    return [sys.executable, TRAIN_PY, "--algo", algo] + common + extra


@pytest.mark.parametrize(
    "algo,sig",
    [
        ("happo", signal.SIGTERM),
        ("hasac", signal.SIGTERM),
        # Ctrl+C takes the same checkpoint path (about 30 s); the default run checks Ctrl+C in test_tracebacks.py
        pytest.param("happo", signal.SIGINT, marks=pytest.mark.slow),
    ],
)
def test_a_stop_signal_checkpoints_and_resume_reaches_the_same_final_step(tmp_path, algo, sig):
    total = 4000
    proc = subprocess.Popen(
        _train_command(algo, str(tmp_path), total),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 120
    run_dir = None
    while time.time() < deadline and proc.poll() is None:
        found = [d for d, _, files in os.walk(tmp_path) if "progress.csv" in files]
        if found and len(read_progress(found[0])) >= 3:
            run_dir = found[0]
            break
        time.sleep(0.2)
    assert run_dir is not None, proc.stderr.read()[-2000:] if proc.poll() is not None else "timeout"
    os.killpg(proc.pid, sig)  # the whole group, as a scheduler or Ctrl+C does
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr[-2000:]
    assert f"python examples/train.py --resume {run_dir}" in stderr and "Traceback" not in stderr
    stopped_at = int(load_checkpoint(checkpoint_path(run_dir))["total_steps"])
    assert 0 < stopped_at < total

    resumed = subprocess.run(
        [sys.executable, TRAIN_PY, "--resume", run_dir], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    steps = [int(r["env_steps"]) for r in read_progress(run_dir)]
    assert steps[-1] == total and steps == sorted(set(steps))


# --- resume refusals --------------------------------------------------------------------------


def test_resuming_a_finished_run_says_so(tmp_path):
    runner = train("happo", "toy", str(tmp_path), TINY["happo"])
    done = subprocess.run(
        [sys.executable, TRAIN_PY, "--resume", runner.run_dir], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "already finished at 240 env steps" in done.stderr and "examples/evaluate.py" in done.stderr


def test_a_non_finite_checkpoint_is_not_resumed(tmp_path):
    runner = train("happo", "toy", str(tmp_path), TINY["happo"])
    path = checkpoint_path(runner.run_dir)
    state = load_checkpoint(path)
    state["total_steps"] = 40  # as if killed early
    first_actor = next(iter(state["algorithm"]["actors"][0].values()))
    tensor = next(v for v in first_actor.values() if isinstance(v, torch.Tensor) and v.is_floating_point())
    tensor.view(-1)[0] = math.nan
    atomic_torch_save(state, path)
    from harl.cli import parse_train_args
    from harl.runners import RUNNER_REGISTRY

    args, algo_args, env_args = parse_train_args(["--resume", runner.run_dir])
    resumed = RUNNER_REGISTRY[args["algo"]](args, algo_args, env_args)
    try:
        with pytest.raises(CheckpointError, match="holds non-finite values"):
            resumed.run()
    finally:
        resumed.close()


# --- values checked before anything is written ------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--n_rollout_threads", "0"], "'n_rollout_threads' must be >= 1, got 0"),
        (["--hidden_sizes", "[]"], "'hidden_sizes' must not be empty"),
        (["--hidden_sizes", "[0]"], "'hidden_sizes' needs every item >= 1, got [0]"),
        (["--episode_length", "0"], "'episode_length' must be >= 1"),
        (["--checkpoint_interval", "0"], "'checkpoint_interval' must be >= 1"),
        (["--seed", "-3"], "'seed' must be >= 0 and <= 4294967295, got -3"),
        (["--lr", "-0.1"], "'lr' must be > 0, got -0.1"),
        (["--lr", "1e400"], "'lr' must be > 0, got inf"),
        (["--eval_episodes", "0"], "'eval_episodes' must be >= 1"),
        (["--gamma", "1.5"], "'gamma' must be >= 0 and <= 1"),
        (["--n_env_workers", "1.5"], "'n_env_workers' must be null or an integer >= -1, got 1.5"),
        (["--n_env_workers", "True"], "'n_env_workers' must be null or an integer >= -1, got True"),
        (["--n_env_workers", "-2"], "'n_env_workers' must be integer >= -1, got -2"),
    ],
)
def test_out_of_range_values_are_config_errors(overrides, message):
    from harl.cli import parse_train_args

    with pytest.raises(ConfigError) as info:
        parse_train_args(["--algo", "happo", "--env", "pettingzoo_mpe"] + overrides)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--batch_size", "0"], "'batch_size' must be >= 1"),
        (["--train_interval", "0"], "'train_interval' must be >= 1"),
        (["--buffer_size", "100", "--batch_size", "256"], "'buffer_size' (100) must be >= batch_size (256)"),
        (
            ["--behavior_candidates", "1", "--target_candidates", "2"],
            "'behavior_candidates' (1) must be >= target_candidates (2)",
        ),
    ],
)
def test_haqo_ranges_and_relations(overrides, message):
    from harl.cli import parse_train_args

    with pytest.raises(ConfigError) as info:
        parse_train_args(["--algo", "haqo", "--env", "pettingzoo_mpe"] + overrides)
    assert message in str(info.value)


def test_every_numeric_key_of_every_yaml_has_a_range():
    from harl.utils.config_ranges import load_rules
    from harl.utils.configs_tools import CONFIGS_DIR, _read_yaml

    def numeric_keys(tree):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from numeric_keys(value)
            elif isinstance(value, (int, float, list)) and not isinstance(value, bool):
                yield key

    keys = {key for path in CONFIGS_DIR.glob("*_cfgs/*.yaml") for key in numeric_keys(_read_yaml(path))}
    assert keys - set(load_rules().keys) == set()


@pytest.mark.parametrize(
    "algo, overrides, message",
    [
        ("happo", {"num_env_steps": 10}, "smaller than one rollout"),
        ("hasac", {"num_env_steps": 20, "warmup_steps": 40}, "leaves no training after warmup"),
        ("happo", {"model_dir": "/nonexistent/models"}, "holds no weights"),
        (
            "happo",
            {"use_recurrent_policy": True, "episode_length": 12, "data_chunk_length": 5},
            r"episode_length \(12\) must be a multiple of data_chunk_length \(5\)",
        ),
    ],
)
def test_a_refused_setting_leaves_no_run_directory(tmp_path, algo, overrides, message):
    tiny = TINY_ON_POLICY if algo == "happo" else TINY_OFF_POLICY
    with pytest.raises(ConfigError, match=message):
        train(algo, "toy", str(tmp_path), {**tiny, **overrides})
    assert os.listdir(tmp_path) == []


def test_an_unwritable_log_dir_is_a_config_error(tmp_path):
    from harl.utils.configs_tools import check_writable

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        check_writable(str(blocker / "results"))
    if os.path.isdir("/proc"):  # no one, not even root, creates directories in /proc
        with pytest.raises(ConfigError, match="cannot create run directories in /proc"):
            check_writable("/proc/harl_results")


def test_a_full_disk_is_reported_with_the_space_needed(tmp_path, monkeypatch):
    from harl.utils import checkpoint

    def short_write(obj, file):
        file.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoint.torch, "save", short_write)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda folder: SimpleNamespace(free=1024))
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(OSError) as info:
        checkpoint.atomic_torch_save({"big": torch.zeros(2**20)}, path)
    assert info.value.errno == errno.ENOSPC
    assert (
        "the disk is full" in str(info.value) and "about 4 MiB" in str(info.value) and "0 MiB free" in str(info.value)
    )
    assert os.listdir(tmp_path) == []


def test_unknown_keys_suggest_harl_names_for_other_libraries_names():
    from harl.cli import parse_train_args

    with pytest.raises(ConfigError, match="Unknown config key 'learning_rate'. Did you mean: lr"):
        parse_train_args(["--algo", "happo", "--env", "pettingzoo_mpe", "--learning_rate", "0.1"])
