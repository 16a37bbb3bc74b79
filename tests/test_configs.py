"""Config loading, --KEY VALUE overrides, config.json round trips, run dirs and tuned configs."""

import json
import logging
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from harl.utils import configs_tools
from harl.utils.configs_tools import (
    build_run_config,
    format_config_keys,
    get_defaults_yaml_args,
    init_dir,
    list_config_keys,
    load_config_json,
    parse_cli_value,
    parse_override_tokens,
    save_config,
    update_args,
)
from harl.utils.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
REAL_CONFIGS = REPO / "harl" / "configs"
TUNED = REPO / "tuned_configs"
REFERENCE = Path("/work/shared/reference/harl_tuned_configs")
ON_POLICY = ("happo", "hatrpo", "haa2c", "mappo")

TOY_ENV_YAML = """\
# scenario to build
scenario: simple_spread_v2
# continuous (True) or discrete (False) actions
continuous_actions: True
# steps before truncation
episode_limit: 25
"""


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """The real algorithm YAMLs plus a toy environment YAML, independent of the env layer."""
    root = tmp_path / "configs"
    shutil.copytree(REAL_CONFIGS / "algos_cfgs", root / "algos_cfgs")
    (root / "envs_cfgs").mkdir()
    (root / "envs_cfgs" / "toyenv.yaml").write_text(TOY_ENV_YAML)
    monkeypatch.setattr(configs_tools, "CONFIGS_DIR", root)
    return root


# ---------------------------------------------------------------- YAML defaults


@pytest.mark.parametrize("algo", ON_POLICY)
def test_yaml_has_harl_sections_and_defaults(configs, algo):
    algo_args, env_args = get_defaults_yaml_args(algo, "toyenv")
    sections = ["seed", "device", "train", "eval", "render", "model", "algo", "logger"]
    assert list(algo_args) == sections
    train, model, algo_section = algo_args["train"], algo_args["model"], algo_args["algo"]
    assert train["episode_length"] == 200 and train["n_rollout_threads"] == 20
    assert train["num_env_steps"] == 10_000_000
    assert train["eval_interval"] == 25 and train["log_interval"] == 5
    assert train["checkpoint_interval"] == 10 and train["n_env_workers"] is None
    assert model["hidden_sizes"] == [128, 128] and model["lr"] == 0.0005
    assert model["critic_lr"] == 0.0005 and model["opti_eps"] == 1e-5
    assert algo_args["device"]["torch_threads"] == 4
    assert "final_activation_func" not in model
    assert env_args == yaml.safe_load(TOY_ENV_YAML)
    if algo == "hatrpo":
        assert algo_section["kl_threshold"] == 0.01 and algo_section["ls_step"] == 10
        assert algo_section["accept_ratio"] == 0.5 and algo_section["backtrack_coeff"] == 0.8
    elif algo == "haa2c":
        assert algo_section["a2c_epoch"] == 5
    else:
        assert algo_section["ppo_epoch"] == 5 and algo_section["clip_param"] == 0.2
    assert algo_section["share_param"] is algo_section["fixed_order"] is (algo == "mappo")


@pytest.mark.parametrize("algo", ON_POLICY)
def test_every_yaml_key_has_a_comment(algo):
    lines = (REAL_CONFIGS / "algos_cfgs" / f"{algo}.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"\s+\w+:", line):
            assert lines[number - 1].strip().startswith("#"), f"{algo}.yaml:{number + 1} {line!r}"


@pytest.mark.parametrize("algo", ON_POLICY)
def test_yaml_keys_match_harl(configs, algo):
    """Same key set as HARL's published configs of the algorithm, plus our additions."""
    files = sorted(REFERENCE.glob(f"*/*/{algo}/config.json"))
    if not files:
        pytest.skip("HARL reference configs not available on this machine")
    harl = json.loads(files[0].read_text())["algo_args"]
    ours, _ = get_defaults_yaml_args(algo, "toyenv")
    expected = {s: set(keys) for s, keys in harl.items()}
    expected["train"] |= {"checkpoint_interval", "keep_snapshots", "n_env_workers", "env_reply_timeout"}
    assert {s: set(keys) for s, keys in ours.items()} == expected


def test_unknown_algo_and_env_list_available(configs):
    with pytest.raises(ConfigError, match=r"Unknown algorithm 'hapo'.*happo.*Available.*hatrpo"):
        get_defaults_yaml_args("hapo", "toyenv")
    with pytest.raises(ConfigError, match=r"Unknown environment 'nope'.*Available.*toyenv"):
        get_defaults_yaml_args("happo", "nope")


def test_duplicate_key_across_yamls_is_rejected(configs):
    (configs / "envs_cfgs" / "clash.yaml").write_text("# clashes with model.lr\nlr: 1.0\n")
    with pytest.raises(ConfigError, match=r"'lr' is defined in both 'model' and 'env'"):
        get_defaults_yaml_args("happo", "clash")


# ---------------------------------------------------------------- value parsing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("True", True),
        ("true", True),
        ("False", False),
        ("false", False),
        ("None", None),
        ("null", None),
        ("1e-3", 1e-3),
        ("5", 5),
        ("-1", -1),
        ("0.5", 0.5),
        ("[128,128]", [128, 128]),
        ("[256, 256, 256]", [256, 256, 256]),
        ("relu", "relu"),
        ("orthogonal_", "orthogonal_"),
        ("./results", "./results"),
        ("", ""),
        ("'quoted'", "quoted"),
        ("__import__('os').system('echo pwned')", "__import__('os').system('echo pwned')"),
    ],
)
def test_parse_cli_value(text, expected):
    value = parse_cli_value(text)
    assert value == expected and type(value) is type(expected)


# ---------------------------------------------------------------- overrides


def test_update_args_parses_and_types(configs):
    algo_args, env_args = get_defaults_yaml_args("happo", "toyenv")
    update_args(
        {
            "lr": "1e-3",
            "critic_lr": "1",  # int accepted where a float is expected, stored as float
            "num_env_steps": "2e6",  # integral float accepted for an int
            "use_eval": "false",
            "hidden_sizes": "[64,64]",
            "activation_func": "tanh",
            "model_dir": "some/dir",
            "n_env_workers": "-1",
            "continuous_actions": "False",
            "scenario": "simple_reference_v2",
            "seed": 3,
        },
        algo_args,
        env_args,
    )
    assert algo_args["model"]["lr"] == 1e-3
    assert algo_args["model"]["critic_lr"] == 1.0
    assert isinstance(algo_args["model"]["critic_lr"], float)
    assert algo_args["train"]["num_env_steps"] == 2_000_000
    assert type(algo_args["train"]["num_env_steps"]) is int
    assert algo_args["eval"]["use_eval"] is False
    assert algo_args["model"]["hidden_sizes"] == [64, 64]
    assert algo_args["model"]["activation_func"] == "tanh"
    assert algo_args["train"]["model_dir"] == "some/dir"
    assert algo_args["train"]["n_env_workers"] == -1
    assert env_args["continuous_actions"] is False and env_args["scenario"] == "simple_reference_v2"
    assert algo_args["seed"]["seed"] == 3


def test_string_key_keeps_raw_text(configs):
    algo_args, env_args = get_defaults_yaml_args("happo", "toyenv")
    update_args({"scenario": "6", "activation_func": "null"}, algo_args, env_args)
    assert env_args["scenario"] == "6" and algo_args["model"]["activation_func"] == "null"


def test_unknown_key_suggests_and_says_how_to_list(configs):
    algo_args, env_args = get_defaults_yaml_args("happo", "toyenv")
    with pytest.raises(ConfigError) as info:
        update_args({"critc_lr": "0.1"}, algo_args, env_args, algo="happo", env="toyenv")
    message = str(info.value)
    assert "Unknown config key 'critc_lr'" in message and "critic_lr" in message
    assert "--algo happo --env toyenv --list_keys" in message


def test_unknown_substring_key_is_suggested(configs):
    algo_args, env_args = get_defaults_yaml_args("happo", "toyenv")
    with pytest.raises(ConfigError, match="hidden_sizes"):
        update_args({"hidden": "[1]"}, algo_args, env_args)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("use_eval", "1", "expects a bool"),  # bool must be bool, not int
        ("use_eval", 0, "expects a bool"),
        ("ppo_epoch", "True", "expects an int"),  # and an int is not a bool
        ("ppo_epoch", "2.5", "expects an int"),
        ("ppo_epoch", "five", "expects an int"),
        ("lr", "fast", "expects a number"),
        ("lr", "[0.1]", "expects a number"),
        ("hidden_sizes", "128", "expects a list"),
        ("hidden_sizes", "128,128", "expects a list"),
        ("hidden_sizes", "[128, 'x']", "expects a list of int"),
        ("scenario", 3, "expects a string"),
    ],
)
def test_wrong_type_names_key_type_and_value(configs, key, value, expected):
    algo_args, env_args = get_defaults_yaml_args("happo", "toyenv")
    before = json.dumps([algo_args, env_args])
    with pytest.raises(ConfigError, match=expected) as info:
        update_args({key: value, "lr": "0.1"} if key != "lr" else {key: value}, algo_args, env_args)
    assert key in str(info.value) and repr(value) in str(info.value)
    assert json.dumps([algo_args, env_args]) == before, "a failed update must change nothing"


def test_all_problems_reported_at_once(configs):
    algo_args, env_args = get_defaults_yaml_args("happo", "toyenv")
    with pytest.raises(ConfigError) as info:
        update_args({"lrr": "1", "use_eval": "2"}, algo_args, env_args)
    assert "'lrr'" in str(info.value) and "'use_eval'" in str(info.value)


@pytest.mark.parametrize(
    "tokens, expected",
    [
        (["--lr", "0.1", "--hidden_sizes=[64,64]"], {"lr": "0.1", "hidden_sizes": "[64,64]"}),
        (["--n_env_workers", "-1"], {"n_env_workers": "-1"}),
        (["--model_dir="], {"model_dir": ""}),
        ([], {}),
    ],
)
def test_parse_override_tokens(tokens, expected):
    assert parse_override_tokens(tokens) == expected


@pytest.mark.parametrize(
    "tokens, expected",
    [
        (["--lr"], "--lr needs a value"),
        (["--lr", "--gamma", "0.9"], "--lr needs a value"),
        (["lr", "0.1"], "Unexpected argument 'lr'"),
        (["-lr", "0.1"], "Unexpected argument '-lr'"),
        (["--lr", "1", "--lr=2"], "given twice"),
    ],
)
def test_parse_override_tokens_errors(tokens, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_override_tokens(tokens)


def test_list_config_keys_has_values_and_comments(configs):
    keys = {item.key: item for item in list_config_keys("hatrpo", "toyenv")}
    assert keys["kl_threshold"].section == "algo" and keys["kl_threshold"].value == 0.01
    assert keys["kl_threshold"].comment
    assert keys["episode_limit"].section == "env"
    assert keys["episode_limit"].comment == "steps before truncation"
    text = format_config_keys("hatrpo", "toyenv")
    assert "[algo]" in text and "kl_threshold = 0.01" in text and "[env]" in text


# ---------------------------------------------------------------- config.json


def test_config_json_round_trip(configs, tmp_path):
    args, algo_args, env_args = build_run_config(
        "hatrpo", "toyenv", "exp", "", "", {"kl_threshold": "0.005", "episode_limit": "50"}
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = save_config(args, algo_args, env_args, str(run_dir))
    saved = json.loads(Path(path).read_text())
    assert saved["main_args"] == {
        "algo": "hatrpo",
        "env": "toyenv",
        "exp_name": "exp",
        "load_config": "",
    }
    main_args, loaded_algo, loaded_env = load_config_json(path)
    assert (loaded_algo, loaded_env) == (algo_args, env_args)
    assert main_args["exp_name"] == "exp"
    # --load_config takes algo/env/exp_name from the file; overrides apply on top of it.
    args2, algo2, env2 = build_run_config(None, None, None, path, "", {"gamma": "0.9"})
    assert (args2["algo"], args2["env"], args2["exp_name"], args2["load_config"]) == (
        "hatrpo",
        "toyenv",
        "exp",
        path,
    )
    assert algo2["algo"]["kl_threshold"] == 0.005 and algo2["algo"]["gamma"] == 0.9
    assert env2["episode_limit"] == 50
    assert not [p for p in os.listdir(run_dir) if p.endswith(".tmp")]


def test_config_json_missing_keys_take_defaults_and_are_logged(configs, tmp_path, caplog):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "main_args": {"algo": "happo", "env": "toyenv", "exp_name": "old", "load_config": ""},
                "algo_args": {"model": {"lr": 0.001}, "algo": {"value_loss_coef": 1}},
                "env_args": {"scenario": "simple_reference_v2"},
            }
        )
    )
    with caplog.at_level(logging.INFO, logger="harl.utils.configs_tools"):
        _, algo_args, env_args = load_config_json(path)
    assert algo_args["model"]["lr"] == 0.001 and algo_args["train"]["checkpoint_interval"] == 10
    assert algo_args["algo"]["value_loss_coef"] == 1.0
    assert env_args == {**yaml.safe_load(TOY_ENV_YAML), "scenario": "simple_reference_v2"}
    assert "checkpoint_interval=10" in caplog.text and "episode_limit=25" in caplog.text


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            {"main_args": {"algo": "happo", "env": "toyenv"}, "algo_args": {"model": {"lrr": 1.0}}},
            r"Unknown config key 'lrr'.*lr",
        ),
        ({"main_args": {"algo": "happo", "env": "toyenv"}, "env_args": {"foo": 1}}, "Unknown config key 'foo'"),
        ({"main_args": {"algo": "happo", "env": "toyenv"}, "algo_args": {"eval": {"use_eval": 1}}}, "expects a bool"),
        ({"main_args": {"env": "toyenv"}}, "must name 'algo' and 'env'"),
        ({"algo_args": {}}, "not a HARL config.json"),
        ({"main_args": {"algo": "nope", "env": "toyenv"}}, "Unknown algorithm 'nope'"),
    ],
)
def test_config_json_errors(configs, tmp_path, content, expected):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=expected):
        load_config_json(path)


def test_config_json_unreadable(configs, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad.json:1:2: malformed JSON"):
        load_config_json(tmp_path / "bad.json")


def test_load_config_contradicting_algo(configs, tmp_path):
    args, algo_args, env_args = build_run_config("happo", "toyenv", None, "", "", {})
    path = save_config(args, algo_args, env_args, str(tmp_path))
    with pytest.raises(ConfigError, match="--algo mappo contradicts"):
        build_run_config("mappo", None, None, path, "", {})
    assert build_run_config(None, None, "renamed", path, "", {})[0]["exp_name"] == "renamed"


def test_resume_rules(configs, tmp_path):
    from harl.utils.checkpoint import CheckpointError, checkpoint_path

    args, algo_args, env_args = build_run_config("happo", "toyenv", "exp", "", "", {})
    run_dir = tmp_path / "run"
    (run_dir / "models").mkdir(parents=True)
    save_config(args, algo_args, env_args, str(run_dir))
    with pytest.raises(CheckpointError, match="no .*checkpoint.pt"):
        build_run_config(None, None, None, "", str(run_dir), {})
    Path(checkpoint_path(run_dir)).write_bytes(b"x")
    resumed, _, _ = build_run_config(None, None, None, "", str(run_dir / "models"), {"n_env_workers": "0"})
    assert resumed["resume"] == str(run_dir) and resumed["exp_name"] == "exp"
    with pytest.raises(ConfigError, match="only .*may change, not lr"):
        build_run_config(None, None, None, "", str(run_dir), {"lr": "0.1"})
    with pytest.raises(ConfigError, match="cannot be combined"):
        build_run_config(None, None, None, str(run_dir / "config.json"), str(run_dir), {})
    with pytest.raises(ConfigError, match="not a run directory"):
        build_run_config(None, None, None, "", str(tmp_path), {})


# ---------------------------------------------------------------- run directory


def test_init_dir_layout_and_uniqueness(tmp_path):
    first = init_dir("toyenv", "happo", "exp", 1, str(tmp_path), task_name="task")
    second = init_dir("toyenv", "happo", "exp", 1, str(tmp_path), task_name="task")
    assert first != second
    for run_dir in (first, second):
        rel = Path(run_dir).relative_to(tmp_path)
        assert rel.parts[:4] == ("toyenv", "task", "happo", "exp")
        assert re.fullmatch(r"seed-00001-\d{4}(-\d\d){5}(_\d+)?", rel.parts[4])
        assert (Path(run_dir) / "logs").is_dir() and (Path(run_dir) / "models").is_dir()


# ---------------------------------------------------------------- tuned configs

TUNED_FILES = sorted(TUNED.glob("*/*/*/config.json"))


def test_tuned_configs_present():
    published = [
        p
        for p in TUNED_FILES
        if p.parts[-2] not in ("haqo", "qmix", "vdn") and p.parts[-4:-1:2] != ("football", "mappo")
    ]  # ours: HARL published HAPPO's only
    per_env = {env: len([p for p in published if p.parts[-4] == env]) for env in {p.parts[-4] for p in published}}
    # HARL's files (MPE, MaMuJoCo, SMAC, SMACv2), and the StarCraft ones again on SMAX but
    # corridor (terrain SMAX cannot play)
    assert per_env == {
        "pettingzoo_mpe": 42,
        "mamujoco": 52,
        "smac": 28,
        "smacv2": 10,
        "smax": 35,
        "football": 5,
        "dexhands": 3,
    }
    assert not list(TUNED.glob("*/*/had3qn"))


def test_smax_tuned_configs_are_the_starcraft_ones():
    """SMAX's files hold the published SMAC/SMACv2 settings of the map of the same name."""
    for path in TUNED.glob("smax/*/*/config.json"):
        smax = json.loads(path.read_text())
        task, algo = path.parts[-3:-1]
        env = "smac" if (TUNED / "smac" / task).is_dir() else "smacv2"
        original = json.loads((TUNED / env / task / algo / "config.json").read_text())
        assert smax["algo_args"] == original["algo_args"], path
        assert smax["main_args"] == {**original["main_args"], "env": "smax"}
        assert smax["env_args"] == {"state_type": "EP", **original["env_args"]}


def test_value_decomposition_tuned_configs_are_pymarl2_settings_beside_happo():
    """QMIX and VDN files: one per discrete HAPPO file (SMAC family, Football, discrete MPE), the YAML
    defaults (pymarl2's) with its two per-map departures, HAPPO's budget and evaluation, the
    global state."""
    from harl.utils.configs_tools import get_defaults_yaml_args

    per_map = {
        "6h_vs_8z": {"epsilon_anneal_steps": 500000, "td_lambda": 0.3},
        "3s5z_vs_3s6z": {"n_rollout_threads": 4, "batch_episodes": 64},
    }
    happo_files = [
        p
        for p in TUNED.glob("*/*/happo/config.json")
        if p.parts[-4] in ("smac", "smacv2", "smax", "football") or p.parts[-3].endswith("-discrete")
    ]
    for algo in ("qmix", "vdn"):
        files = sorted(TUNED.glob(f"*/*/{algo}/config.json"))
        assert len(files) == len(happo_files) == 37  # 3 discrete MPE, 10 SMAC, 5 SMACv2, 14 SMAX, 5 Football
        for path in files:
            config = json.loads(path.read_text())
            happo = json.loads((path.parent.parent / "happo" / "config.json").read_text())
            defaults, _ = get_defaults_yaml_args(algo, path.parts[-4])
            for key, value in per_map.get(path.parts[-3], {}).items():
                next(section for section in defaults.values() if key in section)[key] = value
            for section in ("seed", "device", "eval"):
                defaults[section] = happo["algo_args"][section]
            defaults["train"]["num_env_steps"] = happo["algo_args"]["train"]["num_env_steps"]
            assert config["algo_args"] == defaults, path
            assert config["env_args"] == {
                **happo["env_args"],
                **({"state_type": "EP"} if "state_type" in happo["env_args"] else {}),
            }


def test_football_mappo_files_are_happos_as_harls_mappo_files_differ_from_its_happo_ones():
    """HARL published Football settings for HAPPO only; MAPPO's files (Table 5 has a MAPPO column)
    take HAPPO's, changed where HARL's own MAPPO files differ from its HAPPO ones (MaMuJoCo):
    parameter sharing (and fixed_order, which MAPPO does not read), in every one of them."""

    def differences(mappo_path: Path) -> frozenset:
        mappo = json.loads(mappo_path.read_text())
        happo = json.loads((mappo_path.parent.parent / "happo" / "config.json").read_text())
        return frozenset(
            ((section, key), value)
            for section in mappo["algo_args"]
            for key, value in mappo["algo_args"][section].items()
            if happo["algo_args"][section].get(key) != value
        )

    sharing = frozenset({(("algo", "share_param"), True), (("algo", "fixed_order"), True)})
    harl = [differences(path) for path in TUNED.glob("mamujoco/*/mappo/config.json")]
    assert len(harl) == 6 and all(sharing <= d for d in harl)  # one of them also a task's episode_length
    files = sorted(TUNED.glob("football/*/mappo/config.json"))
    assert len(files) == 5
    for path in files:
        assert differences(path) == sharing, path
        mappo, happo = (
            json.loads(path.read_text()),
            json.loads((path.parent.parent / "happo" / "config.json").read_text()),
        )
        assert mappo["main_args"] == {**happo["main_args"], "algo": "mappo"} and mappo["env_args"] == happo["env_args"]


def test_haqo_tuned_configs_share_happo_settings():
    """HAQO's tuned files copy from HAPPO's the settings that mean the same thing."""
    haqo_files = sorted(TUNED.glob("*/*/haqo/config.json"))
    assert len(haqo_files) == len(list(TUNED.glob("*/*/happo/config.json"))) == 49
    shared = {
        "train": ("n_rollout_threads", "num_env_steps"),
        "eval": ("use_eval", "n_eval_rollout_threads", "eval_episodes"),
        "model": ("hidden_sizes", "activation_func"),
        "algo": ("gamma",),
        "seed": ("seed",),
    }
    for path in haqo_files:
        haqo = json.loads(path.read_text())
        happo = json.loads((path.parent.parent / "happo" / "config.json").read_text())
        assert haqo["env_args"] == happo["env_args"]
        for section, keys in shared.items():
            for key in keys:
                assert haqo["algo_args"][section][key] == happo["algo_args"][section][key], (path, key)
        happo_train = happo["algo_args"]["train"]
        # same env steps between evaluations: HAPPO counts rollouts, HAQO vector steps
        assert (
            haqo["algo_args"]["train"]["eval_interval"] == happo_train["eval_interval"] * happo_train["episode_length"]
        )


def test_vector_step_files_do_not_checkpoint_every_step():
    """The off-policy and value-decomposition runners count checkpoint_interval in env steps (the
    on-policy ones in rollouts): a file copying HAPPO's 10 would write the replay buffer every
    vectorised step, which slowed a Football run tenfold."""
    files = TUNED_FILES + sorted((REPO / "experiments").rglob("config.json"))
    on_policy = {"happo", "hatrpo", "haa2c", "mappo"}
    checked = 0
    for path in files:
        content = json.loads(path.read_text())
        if content["main_args"]["algo"] in on_policy:
            continue
        train = content["algo_args"]["train"]
        if "checkpoint_interval" in train:  # else the YAML default, 100,000
            assert train["checkpoint_interval"] >= train["train_interval"] * train["n_rollout_threads"], path
        checked += 1
    assert checked > 100


def test_per_step_checkpoints_are_warned_about(tmp_path, caplog):
    from e2e_helpers import TINY_OFF_POLICY, train

    with caplog.at_level(logging.WARNING, logger="harl.runners.base_runner"):
        train("hasac", "toy", str(tmp_path), {**TINY_OFF_POLICY, "checkpoint_interval": 4, "num_env_steps": 60})
    assert "checkpoint_interval 4 counts env steps for hasac" in caplog.text
    assert "the hasac defaults checkpoint every 100,000 env steps" in caplog.text


@pytest.mark.parametrize("path", TUNED_FILES, ids=lambda p: "/".join(p.parts[-4:-1]))
def test_tuned_config_loads(path):
    """Checks every file whose algorithm and environment YAMLs exist (the rest are skipped)."""
    content = json.loads(path.read_text())
    env, task, algo = path.parts[-4:-1]
    assert content["main_args"]["exp_name"] == "tuned"
    assert (content["main_args"]["algo"], content["main_args"]["env"]) == (algo, env)
    for kind, name in (("algos_cfgs", algo), ("envs_cfgs", env)):
        if not (REAL_CONFIGS / kind / f"{name}.yaml").is_file():
            pytest.skip(f"harl/configs/{kind}/{name}.yaml does not exist yet")
    _, algo_args, env_args = load_config_json(path)
    for section, entries in content["algo_args"].items():
        for key, value in entries.items():
            assert algo_args[section][key] == value, (section, key)
    for key, value in content["env_args"].items():
        assert env_args[key] == value
    reference = REFERENCE / env / task / algo / "config.json"
    if reference.is_file():
        published = json.loads(reference.read_text())
        assert (content["algo_args"], content["env_args"]) == (
            published["algo_args"],
            published["env_args"],
        )


def test_config_json_without_a_newer_key_keeps_the_behaviour_it_ran_with(tmp_path):
    """HAQO's prediction came with a default (auto: x0 on Discrete) that changes what a discrete
    run does: a config.json written before it loads with eps, so its runs repeat; a file that
    sets it keeps its value."""
    path = tmp_path / "config.json"
    old = {
        "main_args": {"algo": "haqo", "env": "smax"},
        "algo_args": {"model": {"lr": 0.001}},
        "env_args": {"map_name": "3m"},
    }
    path.write_text(json.dumps(old))
    _, algo_args, _ = load_config_json(path)
    assert algo_args["model"]["prediction"] == "eps" and algo_args["model"]["condition_on_available"] is False
    assert algo_args["model"]["critic_form"] == "joint"  # the joint Q that every run had before critic_form
    old["algo_args"]["model"].update(prediction="x0", condition_on_available=True)
    path.write_text(json.dumps(old))
    _, algo_args, _ = load_config_json(path)
    assert algo_args["model"]["prediction"] == "x0" and algo_args["model"]["condition_on_available"] is True
    defaults, _ = get_defaults_yaml_args("haqo", "smax")  # without a file: the new defaults
    assert defaults["model"]["prediction"] == "auto" and defaults["model"]["condition_on_available"] is False
    assert defaults["model"]["critic_form"] == "auto"
