"""An environment family is its folder (a package whose ``SPEC`` names its adapter, task names and
extras) plus one line of ``ENV_REGISTRY`` and its defaults YAML in ``configs/envs_cfgs`` (HARL's
layout): this test builds a new family from a temporary package and runs it through the
registry's whole surface without touching anything else."""

from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pytest

import harl.envs
from harl.envs import (
    EnvNotInstalledError,
    check_env_args,
    check_run_env_args,
    get_task_name,
    make_eval_env,
    make_train_env,
)
from harl.utils import configs_tools
from harl.utils.errors import ConfigError

FAMILY_INIT = '''
"""A coin-matching game: both agents earn 1 when their actions agree."""
from harl.envs.base import EnvSpec

SPEC = EnvSpec(
    adapter="coinfam.coin_env:CoinEnv",
    task_name=lambda a: f"coins-{a['n_coins']}",
    extra="coins",
    provides=("a_package_that_is_not_installed",),
)
'''

FAMILY_ADAPTER = """
import numpy as np
from gymnasium import spaces

from harl.envs import check_env_args
from harl.envs.base import MultiAgentEnv, check_state_type


class CoinEnv(MultiAgentEnv):
    episode_limit = 4

    def __init__(self, env_args):
        args = check_env_args("coins", env_args)
        self.n_agents = 2
        self.observation_spaces = [spaces.Box(-1.0, 1.0, (1,), np.float32)] * 2
        self.share_observation_spaces = [spaces.Box(-1.0, 1.0, (2,), np.float32)] * 2
        self.action_spaces = [spaces.Discrete(args["n_coins"])] * 2
        self._t = 0

    @staticmethod
    def check_args(args):
        if not isinstance(args["n_coins"], int) or args["n_coins"] < 2:
            raise ValueError(f"coins: n_coins must be an integer >= 2, got {args['n_coins']!r}")
        check_state_type(args["state_type"], "coins: state_type")

    def _observe(self):
        obs = [np.zeros(1, np.float32)] * 2
        return obs, np.zeros((2, 2), np.float32), [np.ones(space.n, np.float32) for space in self.action_spaces]

    def reset(self, seed=None):
        self._t = 0
        return self._observe()

    def step(self, actions):
        self._t += 1
        reward = float(int(actions[0][0]) == int(actions[1][0]))
        done = self._t >= self.episode_limit
        obs, share_obs, avail = self._observe()
        info = {"bad_transition": done}
        return obs, share_obs, np.full(2, reward, np.float32), np.full(2, done), info, avail
"""


@pytest.fixture
def coin_family(tmp_path, monkeypatch):
    """The new family's folder on sys.path, its registry line, its defaults YAML."""
    package = tmp_path / "coinfam"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(FAMILY_INIT))
    (package / "coin_env.py").write_text(textwrap.dedent(FAMILY_ADAPTER))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(harl.envs.ENV_REGISTRY, "coins", "coinfam")  # the one registry line
    configs = tmp_path / "configs"
    (configs / "envs_cfgs").mkdir(parents=True)
    (configs / "envs_cfgs" / "coins.yaml").write_text("n_coins: 3  # (valid: >= 2)\nstate_type: EP\n")
    monkeypatch.setattr(configs_tools, "CONFIGS_DIR", configs)
    yield
    for name in [m for m in sys.modules if m.startswith("coinfam")]:
        del sys.modules[name]


def test_a_new_family_needs_its_folder_and_one_registry_line(coin_family):
    args = check_run_env_args("coins", {"n_coins": 4})
    assert dict(args) == {"n_coins": 4, "state_type": "EP"}  # completed with the YAML defaults
    assert get_task_name("coins", {}) == "coins-3"
    assert check_env_args("coins", args) is args  # validated once: checked args pass through
    for make in (make_train_env, make_eval_env):
        for workers in (0, 1):  # in-process, and in a worker process (the args pickled)
            envs = make("coins", 1, 2, args, workers)
            obs, share_obs, avail = envs.reset()
            result = envs.step([np.zeros((2, 1), np.int64), np.zeros((2, 1), np.int64)])
            envs.close()
            assert share_obs.shape == (2, 2, 2) and avail[0].shape == (2, 4)
            np.testing.assert_array_equal(result.rewards, np.ones((2, 2)))


def test_the_family_validates_its_own_arguments(coin_family):
    with pytest.raises(ConfigError, match="coins: n_coins must be an integer >= 2, got 1"):
        check_run_env_args("coins", {"n_coins": 1})
    with pytest.raises(ConfigError, match="coins: state_type must be one of EP, FP, got 'XP'"):
        check_run_env_args("coins", {"state_type": "XP"})
    with pytest.raises(ConfigError, match=r"unknown env_args key\(s\) \['n_dice'\]"):
        check_run_env_args("coins", {"n_dice": 2})


def test_the_family_names_its_missing_package_and_extra(coin_family):
    adapter = textwrap.dedent("import a_package_that_is_not_installed\n") + textwrap.dedent(FAMILY_ADAPTER)
    package_dir = importlib.import_module("coinfam").__path__[0]
    with open(f"{package_dir}/coin_env.py", "w") as f:
        f.write(adapter)
    with pytest.raises(
        EnvNotInstalledError,
        match=r'needs the Python package .a_package_that_is_not_installed.*pip install -e "\.\[coins\]"',
    ):
        check_env_args("coins", {})
