"""The StarCraft II adapters (``--env smac``, ``--env smacv2``) against fake packages that follow
the documented API (tests/fake_starcraft.py): spaces and shared observations, dead agents,
truncation, win rate and seeding, HARL's SMACv2 map configs, HAPPO and HAQO trained end to end,
and the one-paragraph errors when the package, StarCraft II or a map file is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from e2e_helpers import TINY_OFF_POLICY, TINY_ON_POLICY, TINY_QMIX, assert_run_layout, heavy_import_recorder, train
from fake_starcraft import FAKE_EPISODE_LIMIT, FakeCapabilityEnvWrapper, install_fakes

from harl.envs import EnvNotInstalledError, check_env_args
from harl.envs.smac.smac_env import SMAC_MAPS, SMACEnv
from harl.envs.smacv2.smacv2_env import SMACV2_MAPS, SMACv2Env, map_config
from harl.envs.smax.maps import SMAC_MAP_NAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "examples", "train.py")

TINY_HAPPO = {**TINY_ON_POLICY, "num_env_steps": 80}
TINY_HAQO = {**TINY_OFF_POLICY, "n_timesteps": 4, "num_env_steps": 120}

# HARL's harl/configs/envs_cfgs/smacv2_map_config/terran_5_vs_5.yaml, as the wrapper receives it.
HARL_TERRAN_5_VS_5 = {
    "continuing_episode": False,
    "difficulty": "7",
    "game_version": None,
    "map_name": "10gen_terran",
    "move_amount": 2,
    "obs_all_health": True,
    "obs_instead_of_state": False,
    "obs_last_action": False,
    "obs_own_health": True,
    "obs_pathing_grid": False,
    "obs_terrain_height": False,
    "obs_timestep_number": False,
    "reward_death_value": 10,
    "reward_defeat": 0,
    "reward_negative_scale": 0.5,
    "reward_only_positive": True,
    "reward_scale": True,
    "reward_scale_rate": 20,
    "reward_sparse": False,
    "reward_win": 200,
    "replay_dir": "",
    "replay_prefix": "",
    "conic_fov": False,
    "obs_own_pos": True,
    "use_unit_ranges": True,
    "min_attack_range": 2,
    "num_fov_actions": 12,
    "capability_config": {
        "n_units": 5,
        "n_enemies": 5,
        "team_gen": {
            "dist_type": "weighted_teams",
            "unit_types": ["marine", "marauder", "medivac"],
            "weights": [0.45, 0.45, 0.1],
            "exception_unit_types": ["medivac"],
            "observe": True,
        },
        "start_positions": {"dist_type": "surrounded_and_reflect", "p": 0.5, "map_x": 32, "map_y": 32},
    },
    "state_last_action": True,
    "state_timestep_number": False,
    "step_mul": 8,
    "heuristic_ai": False,
    "debug": False,
}


@pytest.fixture(autouse=True)
def forget_fake_packages():
    """No fake ``smac*`` module stays cached for later test files (this runs after
    monkeypatch has put back what it removed)."""
    yield
    for name in [n for n in sys.modules if n.split(".")[0] in ("smac", "smacv2")]:
        del sys.modules[name]


def _random_actions(avail: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    return [np.array([rng.choice(np.flatnonzero(a))]) for a in avail]


def _only_noop(avail: list[np.ndarray]) -> list[bool]:
    return [bool(a[0] == 1 and not a[1:].any()) for a in avail]


# ---------------------------------------------------------------- the adapters on the fakes


@pytest.mark.parametrize("state_type", ["EP", "FP"])
def test_smac_spaces_and_shared_observations(tmp_path, monkeypatch, state_type):
    install_fakes(tmp_path, monkeypatch)
    env = SMACEnv({"map_name": "3m", "state_type": state_type})
    sizes = env._env.get_env_info()
    n, d, s = 3, sizes["obs_shape"], sizes["state_shape"]
    obs, share_obs, avail = env.reset(seed=1)
    assert env.n_agents == n and env.episode_metric_names == ("win_rate",)
    assert env.episode_limit == sizes["episode_limit"]
    assert [space.shape for space in env.observation_spaces] == [(d,)] * n
    assert [space.n for space in env.action_spaces] == [6 + 3] * n
    share_size = s + (d + n if state_type == "FP" else 0)
    assert [space.shape for space in env.share_observation_spaces] == [(share_size,)] * n
    assert share_obs.shape == (n, share_size) and share_obs.dtype == np.float32
    state = env._env.get_state()
    for i in range(n):
        assert obs[i].shape == (d,) and obs[i].dtype == np.float32
        assert avail[i].shape == (9,) and avail[i].dtype == np.float32
        expected = np.concatenate([state, obs[i], np.eye(n)[i]]) if state_type == "FP" else state
        np.testing.assert_array_equal(share_obs[i], expected)
    env.close()
    assert env._env.closed


def test_smac_dead_agents_truncation_and_win_rate(tmp_path, monkeypatch):
    """Dead agents (only the no-op left) are done; every agent is done at the end; the win rate
    is 1 or 0; the episode limit reached undecided with allies alive is a truncation."""
    install_fakes(tmp_path, monkeypatch)
    env = SMACEnv({"map_name": "3m", "state_type": "EP"})
    rng = np.random.default_rng(0)
    outcomes, saw_dead_agent = set(), False
    for seed in range(16):
        _, _, avail = env.reset(seed=seed)
        for t in range(1, FAKE_EPISODE_LIMIT + 1):
            _, _, rewards, dones, info, avail = env.step(_random_actions(avail, rng))
            assert rewards.shape == (3,) and rewards.dtype == np.float32 and len(set(rewards)) == 1
            dead = _only_noop(avail)
            if "episode_metrics" not in info:
                assert dones.tolist() == dead and info["bad_transition"] is False
                saw_dead_agent |= any(dead)
                continue
            assert dones.all()
            won = info["episode_metrics"]["win_rate"]
            assert won in (0.0, 1.0)
            truncated = won == 0.0 and t == FAKE_EPISODE_LIMIT and not all(dead)
            assert info["bad_transition"] is truncated
            outcomes.add("won" if won else "truncated" if truncated else "lost")
            break
        else:
            pytest.fail("the episode did not end at the episode limit")
    assert saw_dead_agent
    assert outcomes == {"won", "truncated", "lost"}


def test_smac_follows_the_packages_episode_limit_flag(tmp_path, monkeypatch):
    install_fakes(tmp_path, monkeypatch)
    env = SMACEnv({"map_name": "3m", "state_type": "EP"})
    _, _, avail = env.reset(seed=0)
    package_step = env._env.step

    def stopped_by_the_limit(actions):  # what smac reports with continuing_episode
        reward, _, info = package_step(actions)
        return reward, True, {**info, "battle_won": False, "episode_limit": True}

    env._env.step = stopped_by_the_limit
    *_, dones, info, _ = env.step(_random_actions(avail, np.random.default_rng(0)))
    assert dones.all() and info["bad_transition"] is True
    assert info["episode_metrics"] == {"win_rate": 0.0}


def test_smac_seeded_reset_starts_a_new_game(tmp_path, monkeypatch):
    install_fakes(tmp_path, monkeypatch)
    env = SMACEnv({"map_name": "3m", "state_type": "FP"})
    built_for_the_spaces = env._env
    first = env.reset(seed=7)
    assert built_for_the_spaces.closed and not built_for_the_spaces.launched
    game = env._env
    assert game.seed_value == 7 and game.launched
    again = env.reset(seed=7)
    assert game.closed and env._env is not game and env._env.seed_value == 7
    np.testing.assert_array_equal(first[1], again[1])
    game = env._env
    continued = env.reset()
    assert env._env is game and not game.closed
    assert not np.array_equal(first[1], continued[1])


def test_smacv2_map_configs_are_harls():
    assert len(SMACV2_MAPS) == 15 and "zerg_20_vs_23" in SMACV2_MAPS
    assert map_config("terran_5_vs_5") == HARL_TERRAN_5_VS_5
    protoss = map_config("protoss_20_vs_23")
    assert protoss["map_name"] == "10gen_protoss"
    assert protoss["capability_config"]["n_units"] == 20 and protoss["capability_config"]["n_enemies"] == 23
    assert protoss["capability_config"]["team_gen"] == {
        "dist_type": "weighted_teams",
        "unit_types": ["stalker", "zealot", "colossus"],
        "weights": [0.45, 0.45, 0.1],
        "observe": True,
    }
    zerg = map_config("zerg_10_vs_11")["capability_config"]
    assert (zerg["n_units"], zerg["n_enemies"]) == (10, 11)
    assert zerg["team_gen"]["unit_types"] == ["zergling", "baneling", "hydralisk"]
    assert zerg["team_gen"]["weights"] == [0.45, 0.1, 0.45]
    assert zerg["team_gen"]["exception_unit_types"] == ["baneling"]
    # the wrapper writes into the capability config: every call must build new containers
    a, b = map_config("zerg_10_vs_11"), map_config("zerg_10_vs_11")
    assert a == b and a["capability_config"]["team_gen"] is not b["capability_config"]["team_gen"]
    assert a["capability_config"]["team_gen"]["unit_types"] is not b["capability_config"]["team_gen"]["unit_types"]
    assert a["capability_config"]["start_positions"] is not b["capability_config"]["start_positions"]


@pytest.mark.parametrize("map_name,n_units,n_enemies", [("terran_5_vs_5", 5, 5), ("zerg_10_vs_11", 10, 11)])
def test_smacv2_team_sizes_come_from_the_capability_config(tmp_path, monkeypatch, map_name, n_units, n_enemies):
    install_fakes(tmp_path, monkeypatch)
    env = SMACv2Env({"map_name": map_name})
    assert isinstance(env._env, FakeCapabilityEnvWrapper)
    assert env.n_agents == n_units and env.action_spaces[0].n == 6 + n_enemies
    # a seeded reset builds a second wrapper, which fails on a reused capability config
    obs, share_obs, _ = env.reset(seed=3)
    assert env._env.seed_value == 3 and env._env.kwargs["map_name"] == map_config(map_name)["map_name"]
    assert len(obs) == n_units and share_obs.shape == (n_units, env._env.get_env_info()["state_shape"])
    env.close()


# ---------------------------------------------------------------- training end to end


@pytest.mark.parametrize(
    "algo,env_name,env_args",
    [
        ("happo", "smac", {"map_name": "3m", "state_type": "EP"}),
        ("happo", "smacv2", {"map_name": "terran_5_vs_5", "state_type": "FP"}),
        ("haqo", "smac", {"map_name": "3m", "state_type": "FP"}),
        ("haqo", "smacv2", {"map_name": "terran_5_vs_5", "state_type": "EP"}),
        ("qmix", "smac", {"map_name": "3m", "state_type": "EP"}),
        ("vdn", "smacv2", {"map_name": "terran_5_vs_5", "state_type": "EP"}),
    ],
)
def test_training_end_to_end(tmp_path, monkeypatch, algo, env_name, env_args):
    """The fake raises on an unavailable action, so finishing proves every executed action
    (rollouts, warm-up, evaluation) respected the availability masks."""
    install_fakes(tmp_path, monkeypatch)
    overrides = {"happo": TINY_HAPPO, "haqo": TINY_HAQO}.get(algo, TINY_QMIX)
    runner = train(algo, env_name, str(tmp_path / "results"), {**overrides, **env_args})
    rows = assert_run_layout(runner.run_dir, overrides["num_env_steps"])
    assert os.path.join(env_name, env_args["map_name"], algo) in runner.run_dir
    win_rates = [float(row["eval_win_rate"]) for row in rows if row["eval_win_rate"] != ""]
    assert win_rates and all(0.0 <= rate <= 1.0 for rate in win_rates)


# ---------------------------------------------------------------- what is missing, said clearly


def test_missing_starcraft_fails_within_seconds_in_one_paragraph(tmp_path):
    sc2 = tmp_path / "no_starcraft"
    sc2.mkdir()
    log_dir = tmp_path / "results"
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "SC2PATH")}
    # sitecustomize runs at interpreter start-up; a None entry hides smac even where it is installed
    env, imported = heavy_import_recorder(str(tmp_path / "shadow"), "import sys\nsys.modules['smac'] = None\n", env)
    env.update(SC2PATH=str(sc2))
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, TRAIN, "--algo", "haqo", "--env", "smac", "--exp_name", "mmm2", "--log_dir", str(log_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
        check=False,
    )
    elapsed = time.perf_counter() - start
    print(f"missing StarCraft II: examples/train.py exited {out.returncode} after {elapsed:.2f} s")
    assert out.returncode == 1, out.stderr
    # "within seconds" on any machine: torch is never imported (well under a second when idle);
    # the wall-clock bound is only a hang detector, generous for a loaded or cold machine
    with open(imported, encoding="utf-8") as file:
        assert file.read() == ""  # the heavy packages imported before the error: none
    assert elapsed < 30
    message = out.stderr.strip()
    assert "\n" not in message, message
    assert message.startswith("error (EnvNotInstalledError): smac cannot play MMM2: ")
    for part in (
        "the Python package smac",
        'pip install -e ".[smac]"',
        f"StarCraft II was not found in {sc2}",
        "iagreetotheeula",
        "MMM2.SC2Map is missing",
        "--env smax --map_name MMM2",
    ):
        assert part in message
    assert not log_dir.exists() or not any(log_dir.iterdir())


def test_smac3_is_recognised_without_importing_it(tmp_path, monkeypatch):
    """The stand-in for SMAC3 raises when imported: the check must only look at files."""
    install_fakes(tmp_path, monkeypatch, smac3=True)
    with pytest.raises(EnvNotInstalledError) as err:
        check_env_args("smac", {"map_name": "3m"})
    message = str(err.value)
    assert "SMAC3" in message and "pip uninstall smac" in message and 'pip install -e ".[smac]"' in message
    assert "StarCraft II was not found" not in message and "SC2Map" not in message


def test_broken_package_fails_cleanly_when_the_env_is_built(tmp_path, monkeypatch):
    install_fakes(tmp_path, monkeypatch)
    (tmp_path / "site" / "smac" / "env" / "__init__.py").write_text("import pysc2_missing_dependency\n")
    with pytest.raises(EnvNotInstalledError, match=r"cannot import StarCraft2Env from smac\.env .*pysc2_missing"):
        SMACEnv({"map_name": "3m"})


def test_missing_game_names_the_sc2path_folder(tmp_path, monkeypatch):
    sc2 = install_fakes(tmp_path, monkeypatch, versions=False)
    start = time.perf_counter()
    with pytest.raises(EnvNotInstalledError) as err:
        check_env_args("smac", {"map_name": "3m"})
    # a hang detector: the check only looks at files (milliseconds); generous for a loaded machine
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert f"StarCraft II was not found in {sc2} (no Versions folder there" in message
    assert "https://github.com/Blizzard/s2client-proto#downloads" in message and "iagreetotheeula" in message
    assert "Python package" not in message and "SC2Map" not in message
    assert "--env smax --map_name 3m" in message


@pytest.mark.parametrize(
    "env_name,map_name,map_file,source",
    [
        ("smac", "MMM2", "MMM2.SC2Map", "https://github.com/oxwhirl/smac/releases/download/v0.1-beta1/SMAC_Maps.zip"),
        ("smacv2", "zerg_5_vs_5", "32x32_flat.SC2Map", "https://github.com/oxwhirl/smacv2"),
    ],
)
def test_missing_map_names_the_map_file(tmp_path, monkeypatch, env_name, map_name, map_file, source):
    sc2 = install_fakes(tmp_path, monkeypatch, maps=())
    with pytest.raises(EnvNotInstalledError) as err:
        check_env_args(env_name, {"map_name": map_name})
    message = str(err.value)
    assert f"the map file {sc2 / 'Maps' / 'SMAC_Maps' / map_file} is missing" in message
    assert source in message and f"into {sc2 / 'Maps'}" in message
    assert "Python package" not in message and "StarCraft II was not found" not in message
    assert f"--env smax --map_name {map_name}" in message


@pytest.mark.parametrize(
    "env_name,env_args,expected",
    [
        ("smac", {"map_name": "4m"}, f"smac: unknown map_name '4m'; valid: {', '.join(SMAC_MAPS)}"),
        (
            "smacv2",
            {"map_name": "protoss_5_vs_6"},
            f"smacv2: unknown map_name 'protoss_5_vs_6'; valid: {', '.join(SMACV2_MAPS)}",
        ),
        ("smac", {"state_type": "XP"}, "smac: state_type must be one of EP, FP, got 'XP'"),
        ("smacv2", {"state_type": "ep"}, "smacv2: state_type must be one of EP, FP, got 'ep'"),
    ],
)
def test_bad_args_list_the_valid_values_before_any_requirement(tmp_path, monkeypatch, env_name, env_args, expected):
    install_fakes(tmp_path, monkeypatch, packages=False)
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        check_env_args(env_name, env_args)


def test_corridor_is_a_smac_map_without_smax_counterpart(tmp_path, monkeypatch):
    install_fakes(tmp_path, monkeypatch, packages=False)
    with pytest.raises(EnvNotInstalledError) as err:
        check_env_args("smac", {"map_name": "corridor"})
    message = str(err.value)
    assert message.startswith("smac cannot play corridor: the Python package smac")
    assert f"has no counterpart of corridor; its SMAC maps are {', '.join(SMAC_MAP_NAMES)}." in message
    assert "--map_name corridor" not in message


def test_adapters_import_no_game_package():
    code = (
        "import sys, harl.envs.smac.smac_env, harl.envs.smacv2.smacv2_env\n"
        "from harl.envs import EnvNotInstalledError, check_env_args\n"
        "for env in ('smac', 'smacv2'):\n"
        "    try:\n"
        "        check_env_args(env, {})\n"
        "    except EnvNotInstalledError:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('smac', 'smacv2', 'pysc2', 'jax', 'jaxmarl')))\n"
    )
    env = {**os.environ, "SC2PATH": os.devnull}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    assert out.stdout.strip() == "[]"
