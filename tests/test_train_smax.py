"""Every algorithm HARL runs on SMAC trains end to end on SMAX (3m): recurrent and FP/EP variants
of the on-policy ones, HASAC and HAQO; every executed action is available; evaluation writes
the win rate."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jaxmarl")

from e2e_helpers import TINY_OFF_POLICY, TINY_ON_POLICY, assert_run_layout, read_progress, train  # noqa: E402

from harl.envs.smax.smax_env import SMAXVecEnv  # noqa: E402


@pytest.fixture
def strict_masks(monkeypatch):
    """SMAX ignores an unavailable action; here executing one fails the test."""
    reset, step = SMAXVecEnv.reset, SMAXVecEnv.step

    def checked_reset(self):
        out = reset(self)
        self.last_available = out[2]
        return out

    def checked_step(self, actions):
        for agent, (action, available) in enumerate(zip(actions, self.last_available)):
            chosen = available[np.arange(self.n_envs), np.asarray(action).reshape(-1).astype(int)]
            assert np.all(chosen == 1), f"agent {agent} executed an unavailable action"
        result = step(self, actions)
        self.last_available = result.available_actions
        return result

    monkeypatch.setattr(SMAXVecEnv, "reset", checked_reset)
    monkeypatch.setattr(SMAXVecEnv, "step", checked_step)


CASES = [
    ("happo", {"use_recurrent_policy": True, "state_type": "FP"}),
    ("mappo", {"use_recurrent_policy": True, "state_type": "EP"}),
    ("hatrpo", {"state_type": "EP"}),
    ("haa2c", {"state_type": "FP"}),
    ("hasac", {"state_type": "EP"}),
    ("haqo", {"state_type": "FP", "n_timesteps": 4, "enumerate_discrete": True}),
]


@pytest.mark.parametrize("algo,extra", CASES, ids=[c[0] for c in CASES])
def test_trains_on_smax_3m_and_reports_win_rate(tmp_path, strict_masks, algo, extra):
    on_policy = algo in ("happo", "mappo", "hatrpo", "haa2c")
    tiny = TINY_ON_POLICY if on_policy else {**TINY_OFF_POLICY, "eval_interval": 40}
    steps = 80 if on_policy else 120
    runner = train(algo, "smax", str(tmp_path), {**tiny, "map_name": "3m", "num_env_steps": steps, **extra})
    rows = assert_run_layout(runner.run_dir, steps)
    win_rates = [float(r["eval_win_rate"]) for r in rows if r["eval_win_rate"] != ""]
    assert win_rates and all(0.0 <= w <= 1.0 for w in win_rates)
    assert "train_win_rate" in read_progress(runner.run_dir)[0]
