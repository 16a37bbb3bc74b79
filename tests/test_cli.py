"""examples/train.py's command line: parsing, --help, --list_keys and clean error exits."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harl.cli import handle_cli_errors, parse_train_args
from harl.envs.base import EnvNotInstalledError, EnvWorkerError
from harl.utils import configs_tools
from harl.utils.checkpoint import CheckpointError
from harl.utils.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "examples" / "train.py"


@pytest.fixture
def configs(tmp_path, monkeypatch):
    root = tmp_path / "configs"
    shutil.copytree(REPO / "harl" / "configs" / "algos_cfgs", root / "algos_cfgs")
    (root / "envs_cfgs").mkdir()
    env_yaml = "# steps before truncation\nepisode_limit: 25\n"
    (root / "envs_cfgs" / "toyenv.yaml").write_text(env_yaml)
    monkeypatch.setattr(configs_tools, "CONFIGS_DIR", root)
    # The registries list the real algorithms and environments; the toy env is not among them.
    monkeypatch.setattr("harl.cli._registry_keys", lambda module, attribute: (None, ""))
    return root


def run_train(*argv, timeout=60):
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(TRAIN), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    return proc, time.monotonic() - start


# ---------------------------------------------------------------- in-process parsing


def test_overrides_in_both_forms(configs):
    args, algo_args, env_args = parse_train_args(
        [
            "--algo",
            "hatrpo",
            "--env",
            "toyenv",
            "--kl_threshold",
            "0.005",
            "--hidden_sizes=[64,64]",
            "--n_env_workers",
            "-1",
            "--episode_limit",
            "50",
        ]
    )
    assert args == {"algo": "hatrpo", "env": "toyenv", "exp_name": "installtest", "load_config": "", "resume": ""}
    assert algo_args["algo"]["kl_threshold"] == 0.005
    assert algo_args["model"]["hidden_sizes"] == [64, 64]
    assert algo_args["train"]["n_env_workers"] == -1 and env_args["episode_limit"] == 50


def test_flag_without_value_is_an_error(configs):
    with pytest.raises(ConfigError, match="--use_eval needs a value"):
        parse_train_args(["--env", "toyenv", "--use_eval"])


def test_no_abbreviation_of_main_options(configs):
    with pytest.raises(ConfigError, match="Unknown config key 'load'"):
        parse_train_args(["--env", "toyenv", "--load", "x.json"])


def test_list_keys_prints_and_returns_none(configs, capsys):
    assert parse_train_args(["--algo", "haa2c", "--env", "toyenv", "--list_keys"]) is None
    out = capsys.readouterr().out
    assert "a2c_epoch = 5" in out and "episode_limit = 25  # steps before truncation" in out


# ---------------------------------------------------------------- error handling


def test_handle_cli_errors_exit_codes(capsys):
    def config_problem():
        raise ConfigError("Unknown config key 'lrr'. Did you mean: lr?")

    assert handle_cli_errors(config_problem) == 2
    err = capsys.readouterr().err
    assert err == "error: Unknown config key 'lrr'. Did you mean: lr?\n"

    for error in (
        EnvWorkerError("worker 1 died"),
        EnvNotInstalledError("pip install -e .[mpe]"),
        CheckpointError("checkpoint.pt is truncated"),
    ):

        def fail(error=error):
            raise error

        assert handle_cli_errors(fail) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error ({type(error).__name__}): ") and "Traceback" not in err

    def bug():
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        handle_cli_errors(bug)
    assert handle_cli_errors(lambda: None) == 0


# ---------------------------------------------------------------- examples/train.py end to end


def test_help_lists_registries():
    try:
        from harl.envs import ENV_REGISTRY
        from harl.runners import RUNNER_REGISTRY
    except ImportError as err:
        pytest.skip(f"registries not importable yet: {err}")
    proc, _ = run_train("--help")
    assert proc.returncode == 0, proc.stderr
    listing = proc.stdout.replace("\n  ", " ")  # wrapped lines continue with an indent
    lines = listing.splitlines()
    algorithms = next(line for line in lines if line.startswith("Algorithms:"))
    environments = next(line for line in lines if line.startswith("Environments:"))
    assert all(name in algorithms for name in RUNNER_REGISTRY)
    assert all(name in environments for name in ENV_REGISTRY)
    assert "--list_keys" in proc.stdout and "--KEY VALUE" in proc.stdout


def test_unknown_key_exits_fast_with_suggestion():
    for name in ("algos_cfgs/happo.yaml", "envs_cfgs/pettingzoo_mpe.yaml"):
        if not (REPO / "harl" / "configs" / name).is_file():
            pytest.skip(f"harl/configs/{name} does not exist yet")
    proc, seconds = run_train("--algo", "happo", "--env", "pettingzoo_mpe", "--critc_lr", "0.1")
    assert proc.returncode == 2
    assert "Unknown config key 'critc_lr'" in proc.stderr and "critic_lr" in proc.stderr
    assert "--list_keys" in proc.stderr and "Traceback" not in proc.stderr
    assert seconds < 20, "a config error must be reported before any environment or model starts"


def test_resume_of_a_non_run_dir_exits_2(tmp_path):
    proc, _ = run_train("--resume", str(tmp_path))
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
