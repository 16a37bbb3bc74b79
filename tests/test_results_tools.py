"""Aggregation of finished runs: per-seed finals, mean/std, and the seed-range picture."""
from __future__ import annotations

import os

from harl.utils.results_tools import collect, markdown_table, plot_group

def _fake_run(root, seed, finals):
    run_dir = root / "pettingzoo_mpe" / "task" / "happo" / "exp" / f"seed-{seed:05d}-2026"
    run_dir.mkdir(parents=True)
    rows = ["env_steps,wall_time,fps,train_episode_return,eval_episode_return"]
    rows += [f"{1000 * (i + 1)},{i},1,-1,{v}" for i, v in enumerate(finals)]
    rows.append(f"{1000 * (len(finals) + 1)},9,1,-1,")  # a row without evaluation is skipped
    (run_dir / "progress.csv").write_text("\n".join(rows) + "\n")

def test_final_returns_mean_and_spread(tmp_path):
    _fake_run(tmp_path, 1, [-50.0, -40.0])
    _fake_run(tmp_path, 2, [-45.0, -20.0])
    groups = collect(str(tmp_path))
    runs = groups["pettingzoo_mpe/task/happo/exp"]
    assert [r.final_eval_return for r in runs] == [-40.0, -20.0]
    table = markdown_table(groups)
    assert "| 2 | 2000 | 1: -40.00, 2: -20.00 | -30.00 | 10.00 | -40.00 | -20.00 |" in table
    picture = tmp_path / "curve.png"
    plot_group(runs, "g", str(picture))
    assert picture.read_bytes()[:4] == b"\x89PNG"
    assert os.path.getsize(picture) > 1000
