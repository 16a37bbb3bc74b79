"""No traceback a user can reach by ordinary means (issue 31): every YAML and JSON file the
commands read is refused with ``FILE:LINE:COLUMN: what`` and exit 2 however it is broken, Ctrl+C
at any moment ends with one line and exit 130, and a command checks all its arguments before it
prints anything."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harl.utils.errors import ConfigError
from harl.utils.files import load_json, load_yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# kind of broken file -> (its bytes, or None for "no file", "dir" for a directory; the message)
BAD_FILES = {
    "missing": (None, "does not exist"),
    "directory": ("dir", "is a directory"),
    "empty": (b"", "is empty"),
    "blank": (b"  \n\n", "is empty"),
    "not UTF-8": (b"\xff\xfe\x00 binary", ":1:1: the "),
}
MALFORMED_YAML = (b"name: t\ntasks: [\n", ":3:1: malformed YAML")
MALFORMED_JSON = (b'{"main_args": {"algo": "happo",\n  "env": }\n}\n', ":2:10: malformed JSON")


def _write(path: Path, content: bytes | str | None) -> Path:
    if content == "dir":
        path.mkdir(parents=True)
    elif content is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return path


def _run(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _assert_refused(done: subprocess.CompletedProcess, path: Path, message: str) -> None:
    """Exit 2, nothing on stdout, one ``error:`` line that names the file and what is wrong."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert str(path) in lines[0] and message in lines[0], lines[0]


# ----------------------------------------------------------------------------- the readers
@pytest.mark.parametrize("kind", [*BAD_FILES, "malformed"])
def test_yaml_and_json_readers_turn_every_bad_file_into_a_config_error(tmp_path, kind):
    for loader, malformed, name in ((load_yaml, MALFORMED_YAML, "f.yaml"), (load_json, MALFORMED_JSON, "f.json")):
        content, message = malformed if kind == "malformed" else BAD_FILES[kind]
        path = _write(tmp_path / name, content)
        with pytest.raises(ConfigError) as info:
            loader(path, "test file")
        assert str(info.value).startswith(str(path)) and message in str(info.value), str(info.value)


def test_yaml_error_positions_are_one_based_lines_and_columns(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("tasks: [\n")  # the example: the list never closes
    with pytest.raises(ConfigError, match=r"bad.yaml:2:1: malformed YAML in the experiment file"):
        load_yaml(path, "experiment file")
    path.write_text("a: 1\n  b: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2:4: malformed YAML"):
        load_yaml(path)
    path.write_text('a: "x\x01"\n')  # a control character: PyYAML's ReaderError has no mark
    with pytest.raises(ConfigError, match=r"bad.yaml:1:6: malformed YAML .*U\+0001"):
        load_yaml(path)
    path.write_text("# only a comment\n")
    assert load_yaml(path, allow_empty=True) is None


def test_unreadable_file_is_a_config_error(tmp_path, monkeypatch):
    path = tmp_path / "secret.yaml"
    path.write_text("a: 1\n")
    path.chmod(0)
    try:
        if os.geteuid() != 0:  # a real permission error
            with pytest.raises(ConfigError, match="secret.yaml: cannot read the YAML file .permission denied"):
                load_yaml(path)
        # root reads a mode-000 file anyway: the same branch, reached by an open() that refuses
        real_open = open

        def refusing_open(file, *args, **kwargs):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("builtins.open", refusing_open)
        with pytest.raises(ConfigError, match="secret.yaml: cannot read the YAML file .permission denied"):
            load_yaml(path)
    finally:
        path.chmod(0o644)


def test_malformed_project_yaml_files_name_file_line_and_column(tmp_path, monkeypatch):
    from harl.utils import config_ranges, configs_tools

    for kind in ("algos_cfgs", "envs_cfgs"):
        (tmp_path / kind).mkdir()
    (tmp_path / "algos_cfgs" / "happo.yaml").write_text("train:\n  lr: [0.1\n")
    (tmp_path / "envs_cfgs" / "toy.yaml").write_text("n_agents: 2\n")
    monkeypatch.setattr(configs_tools, "CONFIGS_DIR", tmp_path)
    with pytest.raises(ConfigError, match=r"happo.yaml:3:1: malformed YAML in the algorithm config"):
        configs_tools.get_defaults_yaml_args("happo", "toy")
    (tmp_path / "algos_cfgs" / "happo.yaml").write_text("train:\n  lr: 0.1\n")
    (tmp_path / "envs_cfgs" / "toy.yaml").write_text("n_agents: 2\nn_agents 3\n")
    with pytest.raises(ConfigError, match=r"toy.yaml:3:1: malformed YAML in the environment config"):
        configs_tools.get_defaults_yaml_args("happo", "toy")

    ranges = tmp_path / "ranges.yaml"
    ranges.write_text("keys:\n  lr: '> 0'\n  gamma: [\n")
    monkeypatch.setattr(config_ranges, "RANGES_PATH", ranges)
    config_ranges.load_rules.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"ranges.yaml:4:1: malformed YAML in the ranges file"):
            config_ranges.load_rules()
        ranges.write_text("keys:\n  lr: 'positive'\ncross: []\n")
        config_ranges.load_rules.cache_clear()
        with pytest.raises(ConfigError, match="is not like '>= 1'"):
            config_ranges.load_rules()
    finally:
        config_ranges.load_rules.cache_clear()


# ----------------------------------------------------------------------------- the commands
VALID_TUNED = json.dumps(
    {"main_args": {"algo": "happo", "env": "toy"}, "algo_args": {"train": {"num_env_steps": 400}}}
).encode()


def _experiment(tmp_path: Path, tuned: bytes | str | None = VALID_TUNED) -> Path:
    """A one-cell experiment file over the toy env whose tuned config.json holds ``tuned``
    (see :func:`_write`)."""
    _write(tmp_path / "tuned" / "toy" / "toy-discrete" / "happo" / "config.json", tuned)
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: t\ntitle: T\nmetric: return\nseeds: [1]\nalgorithms: [happo]\ntuned_dir: tuned\n"
        "tasks:\n  - {env: toy, task: toy-discrete}\n"
    )
    return path


def _kinds(malformed: tuple[bytes, str]) -> dict[str, tuple[bytes | str | None, str]]:
    return {**BAD_FILES, "malformed": malformed}


@pytest.mark.parametrize("kind", list(_kinds(MALFORMED_YAML)))
def test_reproduce_refuses_a_bad_experiment_file(tmp_path, kind):
    content, message = _kinds(MALFORMED_YAML)[kind]
    message = "not found; the paper's tables are in experiments/paper/" if kind == "missing" else message
    path = _write(tmp_path / "exp.yaml", content)
    done = _run("reproduce.py", path, "--dry_run", "--log_dir", tmp_path / "results")
    _assert_refused(done, path, message)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("kind", list(_kinds(MALFORMED_JSON)))
def test_reproduce_refuses_a_bad_tuned_config(tmp_path, kind):
    content, message = _kinds(MALFORMED_JSON)[kind]
    path = _experiment(tmp_path, content)
    done = _run("reproduce.py", path, "--dry_run", "--log_dir", tmp_path / "results")
    if kind in ("missing", "directory"):  # no config file for the cell
        _assert_refused(done, path, "no tuned config for 1 cell")
    else:
        _assert_refused(done, tmp_path / "tuned" / "toy" / "toy-discrete" / "happo" / "config.json", message)


@pytest.mark.parametrize("kind", list(_kinds(MALFORMED_JSON)))
def test_train_refuses_a_bad_load_config(tmp_path, kind):
    content, message = _kinds(MALFORMED_JSON)[kind]
    path = _write(tmp_path / "config.json", content)
    done = _run("train.py", "--load_config", path, "--log_dir", tmp_path / "results")
    _assert_refused(done, path, message)
    assert not (tmp_path / "results").exists()


def _fake_run(tmp_path: Path, config: bytes | str | None) -> Path:
    """A run directory with a checkpoint file and ``config`` as its config.json."""
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "models" / "checkpoint.pt").write_bytes(b"")
    _write(run / "config.json", config)
    return run


@pytest.mark.parametrize("kind", list(_kinds(MALFORMED_JSON)))
def test_evaluate_and_resume_refuse_a_run_with_a_bad_config_json(tmp_path, kind):
    content, message = _kinds(MALFORMED_JSON)[kind]
    run = _fake_run(tmp_path, content)
    config = run / "config.json"
    done = _run("evaluate.py", run)
    if kind == "missing":
        _assert_refused(done, run, "has no config.json")
    else:
        _assert_refused(done, config, message)
    done = _run("train.py", "--resume", run)
    if kind in ("missing", "directory"):
        _assert_refused(done, run, "has no config.json")
    else:
        _assert_refused(done, config, message)


def _as_user() -> list[str]:
    """A command prefix under which a mode-000 file cannot be read: none for a user other than
    root; for root, setpriv without the two capabilities that let root read it anyway."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    locked = Path(tempfile.mkdtemp()) / "locked"
    locked.write_text("x")
    locked.chmod(0)
    try:
        refused = subprocess.run(prefix + ["cat", str(locked)], capture_output=True).returncode != 0
    except OSError:
        refused = False
    finally:
        shutil.rmtree(locked.parent)
    if not refused:
        pytest.skip("running as root, which reads mode-000 files, and setpriv cannot drop that")
    return prefix


VALID_CONFIG = json.dumps({"main_args": {"algo": "happo", "env": "toy"}}).encode()


@pytest.mark.parametrize("script", ["reproduce.py", "train.py --load_config", "train.py --resume", "evaluate.py"])
def test_unreadable_files_are_refused(tmp_path, script):
    if script == "reproduce.py":
        path = _experiment(tmp_path)
        argv = [path, "--dry_run", "--log_dir", tmp_path / "results"]
    elif script == "train.py --load_config":
        path = _write(tmp_path / "config.json", VALID_CONFIG)
        argv = ["--load_config", path, "--log_dir", tmp_path / "results"]
    else:
        run = _fake_run(tmp_path, VALID_CONFIG)
        path = run / "config.json"
        argv = ["--resume", run] if script == "train.py --resume" else [run]
    path.chmod(0)
    command = [*_as_user(), sys.executable, str(EXAMPLES / script.split()[0]), *map(str, argv)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    path.chmod(0o644)
    _assert_refused(done, path, "(permission denied)")


def test_summarize_refuses_a_damaged_progress_csv_and_a_missing_folder(tmp_path):
    run = tmp_path / "results" / "toy" / "toy-discrete" / "happo" / "t" / "seed-00001-x"
    run.mkdir(parents=True)
    progress = run / "progress.csv"
    progress.write_text("env_steps,wall_time,eval_episode_return\n100,1.0,2.5\n200,2.0,2.5e\n")
    _assert_refused(_run("summarize.py", tmp_path / "results"), progress, ":3: column eval_episode_return")
    progress.write_bytes(b"env_steps,wall_time,eval_episode_return\n\xff\n")
    _assert_refused(_run("summarize.py", tmp_path / "results"), progress, ":2:1: the progress.csv is not UTF-8")
    _assert_refused(_run("summarize.py", tmp_path / "nowhere"), tmp_path / "nowhere", "does not exist")
    blocker = tmp_path / "file"
    blocker.write_text("")
    _assert_refused(_run("summarize.py", tmp_path / "results", "--plot_dir", blocker), blocker, "is a file")


def test_plot_density_refuses_a_directory_as_out(tmp_path):
    out = tmp_path / "figure.png"
    out.mkdir()
    run = _fake_run(tmp_path, b"{}")
    _assert_refused(_run("plot_density.py", run, "--out", out), out, "is a directory")


# ----------------------------------------------------------------------------- output order
def test_evaluate_checks_every_run_before_printing_anything(tmp_path):
    missing = tmp_path / "MISSING_DIR"
    done = _run("evaluate.py", missing)
    _assert_refused(done, missing, "does not exist")
    # the first argument is fine as far as its files go; the second is not: still no table
    good = _fake_run(tmp_path, json.dumps({"main_args": {"algo": "happo", "env": "toy"}}).encode())
    done = _run("evaluate.py", good, missing)
    _assert_refused(done, missing, "does not exist")


# ----------------------------------------------------------------------------- Ctrl+C
def _libraries_loading(pid: int, library: str) -> bool:
    try:
        with open(f"/proc/{pid}/maps", encoding="ascii", errors="replace") as file:
            return library in file.read()
    except OSError:
        return False


def _ctrl_c_while_importing(tmp_path: Path, argv: list[str]) -> tuple[subprocess.Popen, str, str]:
    """Start ``argv``, wait until torch's shared library is mapped (torch is importing), then
    press Ctrl+C: SIGINT to the whole process group, as a terminal does."""
    process = subprocess.Popen(
        [sys.executable, *argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while not _libraries_loading(process.pid, "libtorch_cpu") and process.poll() is None:
            assert time.time() < deadline, "torch never started loading"
            time.sleep(0.005)
        assert process.poll() is None, f"ended before torch loaded: {process.communicate()}"
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process, out, err


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    run = _fake_run(tmp_path, json.dumps({"main_args": {"algo": "happo", "env": "toy"}}).encode())
    experiment = _experiment(tmp_path)
    log = str(tmp_path / "results")
    return {
        "train.py": ["--algo", "happo", "--env", "toy", "--exp_name", "t", "--log_dir", log],
        "reproduce.py": [str(experiment), "--log_dir", log, "--workers", "1"],
        "evaluate.py": [str(run)],
        "summarize.py": [str(tmp_path)],
        "plot_density.py": [str(run), "--out", str(tmp_path / "out.png")],
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches /proc/PID/maps")
@pytest.mark.parametrize("script", ["train.py", "reproduce.py", "evaluate.py", "summarize.py", "plot_density.py"])
def test_ctrl_c_while_torch_imports_is_one_line_and_exit_130(tmp_path, script):
    argv = [str(EXAMPLES / script), *_commands(tmp_path)[script]]
    process, out, err = _ctrl_c_while_importing(tmp_path, argv)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "FakeTensor" not in err and "KeyboardInterrupt" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted (Ctrl+C)"), err
    assert "nothing was written" in lines[0]
    assert not (tmp_path / "results").exists() and not (tmp_path / "out.png").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches /proc/PID/maps")
def test_ctrl_c_half_a_second_into_train_is_one_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "train.py"), *_commands(tmp_path)["train.py"]],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and err == "interrupted (Ctrl+C) before the run started; nothing was written\n"
    assert not (tmp_path / "results").exists()


def _children(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as file:
            return file.read().split()
    except OSError:
        return []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches /proc/PID/task")
@pytest.mark.parametrize("delay", [0.03, 0.1])
def test_ctrl_c_while_worker_processes_start_is_one_line(tmp_path, delay):
    """The terminal's SIGINT reaches the whole process group: a helper process (the resource
    tracker, the forkserver) caught while its interpreter starts must not print a traceback."""
    log = tmp_path / "results"
    process = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "train.py"),
            "--algo",
            "happo",
            "--env",
            "toy",
            "--exp_name",
            "t",
            "--log_dir",
            str(log),
            "--n_env_workers",
            "2",
            "--n_rollout_threads",
            "4",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while not _children(process.pid):
            assert process.poll() is None and time.time() < deadline, process.communicate()
            time.sleep(0.002)
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)  # until every process holding stderr is gone
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Fatal Python error" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted (Ctrl+C) before the run started; nothing was written"
    assert not log.exists()


def test_a_second_ctrl_c_during_training_stops_at_once_with_one_line(tmp_path):
    log = tmp_path / "results"
    process = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "train.py"),
            "--algo",
            "happo",
            "--env",
            "toy",
            "--exp_name",
            "t",
            "--log_dir",
            str(log),
            "--num_env_steps",
            "1000000",
            "--n_rollout_threads",
            "2",
            "--n_env_workers",
            "0",
            "--torch_threads",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while not list(log.glob("*/*/*/*/*/progress.csv")):  # the runner handles SIGINT by now
            assert process.poll() is None and time.time() < deadline, process.communicate()
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)  # the first asks for a checkpoint at the end of the rollout
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)  # the second stops at once
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    run_dir = next(log.glob("*/*/*/*/*"))
    # the line says what the run directory holds: whether the first Ctrl+C's checkpoint was
    # written before the second one depends on the machine's speed
    if (run_dir / "models" / "checkpoint.pt").is_file():
        expected = (
            f"interrupted (Ctrl+C); the run's last checkpoint is kept: continue with: python "
            f"examples/train.py --resume {run_dir}"
        )
    else:
        expected = (
            f"interrupted (Ctrl+C) before the run's first checkpoint; {run_dir} holds its config and "
            "logs only: start the run again"
        )
    assert err.strip().splitlines()[-1] == expected
