"""Aggregation of finished runs: per-seed finals, mean/std, and the seed-range picture."""

from __future__ import annotations

import os

from harl.utils.results_tools import by_task, collect, markdown_table, plot_comparison, plot_group


def _fake_run(root, seed, finals, env="pettingzoo_mpe", win_rates=None):
    run_dir = root / env / "task" / "happo" / "exp" / f"seed-{seed:05d}-2026"
    run_dir.mkdir(parents=True)
    rows = ["env_steps,wall_time,fps,train_episode_return,eval_episode_return,eval_win_rate"]
    win_rates = win_rates or [""] * len(finals)
    rows += [f"{1000 * (i + 1)},{i},1,-1,{v},{w}" for i, (v, w) in enumerate(zip(finals, win_rates))]
    rows.append(f"{1000 * (len(finals) + 1)},9,1,-1,,")  # a row without evaluation is skipped
    (run_dir / "progress.csv").write_text("\n".join(rows) + "\n")


def test_final_returns_mean_and_spread(tmp_path):
    _fake_run(tmp_path, 1, [-50.0, -40.0])
    _fake_run(tmp_path, 2, [-45.0, -20.0])
    groups = collect(str(tmp_path))
    runs = groups["pettingzoo_mpe/task/happo/exp"]
    assert [r.final_eval for r in runs] == [-40.0, -20.0]
    table = markdown_table(groups)
    assert "| episode return | 2 | 2000 | 1: -40.00, 2: -20.00 | -30.00 | 10.00 | -40.00 | -20.00 |" in table
    picture = tmp_path / "curve.png"
    plot_group(runs, "g", str(picture))
    assert picture.read_bytes()[:4] == b"\x89PNG"
    assert os.path.getsize(picture) > 1000


def test_starcraft_runs_are_summarised_in_win_rate(tmp_path):
    _fake_run(tmp_path, 1, [1.5, 1.9], env="smax", win_rates=[0.5, 0.75])
    _fake_run(tmp_path, 2, [1.0, 1.2], env="smax", win_rates=[0.25, 0.25])
    groups = collect(str(tmp_path))
    runs = groups["smax/task/happo/exp"]
    assert [(r.metric, r.final_eval) for r in runs] == [("eval_win_rate", 0.75), ("eval_win_rate", 0.25)]
    # a root below the results folder (results/smax/task) keeps the groups and the win rate
    assert {g: [r.metric for r in rs] for g, rs in collect(str(tmp_path / "smax" / "task")).items()} == {
        "smax/task/happo/exp": ["eval_win_rate", "eval_win_rate"]
    }
    assert (
        "| smax/task/happo/exp | win rate | 2 | 2000 | 1: 0.75, 2: 0.25 | 0.50 | 0.25 | 0.25 | 0.75 |"
        in markdown_table(groups)
    )


def test_algorithms_of_one_task_are_compared_in_one_picture(tmp_path):
    _fake_run(tmp_path, 1, [1.0, 1.5], env="smax", win_rates=[0.1, 0.2])
    other = tmp_path / "smax" / "task" / "haqo" / "exp" / "seed-00001-2026"
    other.mkdir(parents=True)
    (other / "progress.csv").write_text(
        "env_steps,wall_time,fps,train_episode_return,eval_episode_return,eval_win_rate\n1000,1,1,0,1,0.3\n2000,2,1,0,1,0.4\n"
    )
    tasks = by_task(collect(str(tmp_path)))
    assert list(tasks) == ["smax/task/exp"] and sorted(tasks["smax/task/exp"]) == ["happo", "haqo"]
    picture = tmp_path / "compare.png"
    plot_comparison(tasks["smax/task/exp"], "smax/task", str(picture))
    assert picture.read_bytes()[:4] == b"\x89PNG"


def test_a_run_is_read_in_the_metric_asked_for(tmp_path):
    from harl.utils.results_tools import read_run

    _fake_run(tmp_path, 1, [-3.0, -2.0], win_rates=[0.1, 0.4])  # an MPE run: headline metric return
    run_dir = str(next((tmp_path / "pettingzoo_mpe").rglob("seed-*")))
    assert (read_run(run_dir).metric, read_run(run_dir).final_eval) == ("eval_episode_return", -2.0)
    assert (read_run(run_dir, "eval_win_rate").metric, read_run(run_dir, "eval_win_rate").final_eval) == (
        "eval_win_rate",
        0.4,
    )


def test_headline_metric_is_the_papers_unit_per_environment():
    from harl.utils.results_tools import headline_metric

    assert headline_metric("smax") == "eval_win_rate"
    assert headline_metric("football") == "eval_score_rate"
    assert headline_metric("mamujoco") == "eval_episode_return"
