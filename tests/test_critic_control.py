"""benchmarks/critic_control.py (control (a) of issue 32): Monte-Carlo returns with time-limit cuts,
and the quick path end to end with a randomly initialised teacher (shapes and ranges only)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location(
    "critic_control", Path(__file__).resolve().parents[1] / "benchmarks" / "critic_control.py"
)
critic_control = importlib.util.module_from_spec(spec)
sys.modules["critic_control"] = critic_control  # its dataclass looks its module up there
spec.loader.exec_module(critic_control)


def test_mc_returns_restart_at_episode_ends_and_flag_cut_or_open_episodes():
    # one env: a terminated episode (steps 0-1), a time-limit cut one (2-3), an open one (4)
    rewards = np.array([[1.0], [2.0], [1.0], [1.0], [5.0]], np.float32)
    done = np.array([[False], [True], [False], [True], [False]])
    truncated = np.array([[False], [False], [False], [True], [False]])
    returns, complete = critic_control.mc_returns(rewards, done, truncated, gamma=0.5)
    np.testing.assert_allclose(returns[:, 0], [1.0 + 0.5 * 2.0, 2.0, 1.5, 1.0, 5.0])
    assert complete[:, 0].tolist() == [True, True, False, False, False]


@pytest.mark.slow  # about 25 s for a benchmark script (benchmarks/critic_control.py); -m slow runs it
def test_quick_path_with_a_random_teacher_reports_numbers_in_range():
    pytest.importorskip("jaxmarl")
    args = argparse.Namespace(
        teacher=None,
        random_teacher=True,
        steps=5_000,
        test_steps=1_000,
        updates=500,
        report_every=250,
        n_envs=16,
        seed=1,
        threads=1,
        quick=True,
        map_name="3m",
        critic_form="joint",
    )
    lines = list(critic_control.run(args))
    rows = [
        line
        for line in lines
        if line.startswith("| ") and not line.startswith("| updates") and not line.startswith("| ---")
    ]
    assert [row.split(" | ")[0] for row in rows] == ["| 250", "| 500", "| MC regression, 500"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        loss, rmse, bias, corr = (float(c) for c in cells[1:5])
        agree, chance, gap = ([float(v) for v in c.split(" / ")] for c in cells[5:8])
        assert np.isfinite([loss, rmse, bias]).all() and loss >= 0 and rmse >= 0 and -1 <= corr <= 1
        assert len(agree) == len(chance) == len(gap) == 3
        assert all(0 <= a <= 1 for a in agree) and all(0 < c <= 1 for c in chance) and all(g >= 0 for g in gap)
