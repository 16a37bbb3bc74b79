"""What a run shows while it trains: the progress display says what the run is doing until a
training rate can be measured (compiling, warm-up) and shows no ETA until then; training returns
and the task's rate appear as episodes finish; progress.csv gets a row at least every few percent
of the budget whatever the evaluation interval; learning curves draw the task's headline metric
(win rate, success rate, ...) beside the return."""

from __future__ import annotations

import functools
import io
import re
from unittest import mock

import matplotlib.image
import pytest
from e2e_helpers import TINY_OFF_POLICY, TINY_ON_POLICY, TINY_QMIX, read_progress, train

from harl.experiments.report import build_report, gather
from harl.experiments.spec import Experiment, RunSpec, TaskSpec
from harl.runners import base_runner
from harl.utils.logger import RunLogger
from harl.utils.metrics import headline_metric_name, headline_metric_of_columns
from harl.utils.plotting import CURVE_NAME, learning_curve_figure
from harl.utils.results_tools import plot_comparison, read_run

NEVER = 10**9  # an evaluation or log interval longer than any run here


@pytest.fixture
def progress_lines(monkeypatch):
    """The runners' progress display, non-terminal, with a line at every update (instead of one
    every 30 s); call the fixture's value for the lines written so far."""
    stream = io.StringIO()
    monkeypatch.setattr(base_runner, "RunLogger", functools.partial(RunLogger, stream=stream, plain_interval_s=0.0))
    return lambda: [line for line in stream.getvalue().splitlines() if line.startswith("[harl]")]


def _field(line: str, name: str) -> str:
    """The value after ``name`` in a progress line: ``train return 3.5`` -> ``"3.5"``."""
    return re.search(rf"\| {name} (\S+)", line).group(1)


def test_off_policy_warm_up_says_so_and_training_returns_come_before_the_first_evaluation(tmp_path, progress_lines):
    overrides = {**TINY_OFF_POLICY, "num_env_steps": 400, "warmup_steps": 100, "eval_interval": NEVER}
    train("hasac", "toy", str(tmp_path), overrides)
    lines = progress_lines()
    assert lines[0].startswith("[harl] 2/400 steps (0.5%) | warm-up 2/100 random steps | train return")
    warm_up = [line for line in lines if "warm-up" in line]
    assert lines[: len(warm_up)] == warm_up and warm_up[-1].startswith(
        "[harl] 100/400 steps (25.0%) | warm-up 100/100 "
    )
    assert not any("ETA" in line or "fps" in line for line in warm_up)
    after = lines[len(warm_up)]
    assert after.startswith("[harl] 102/400") and "| measuring speed |" in after and "ETA" not in after
    with_eta = [line for line in lines if "ETA" in line]
    assert with_eta and all(re.search(r"\| [\d,]+ fps \| ETA \d", line) for line in with_eta)
    # episodes finish long before the only evaluation (at the end): their return and success rate show
    before_eval = [line for line in lines[:-1] if _field(line, "eval return") == "-"]
    shown = [line for line in before_eval if _field(line, "train return") != "-"]
    assert shown and "warm-up" in shown[0]
    assert all(0.0 <= float(_field(line, "train success rate")) <= 1.0 for line in shown)
    assert _field(lines[-1], "eval return") != "-" and _field(lines[-1], "eval success rate") != "-"


@pytest.mark.parametrize(
    "algo,overrides",
    [
        ("hasac", {**TINY_OFF_POLICY, "num_env_steps": 400}),
        ("haqo", {**TINY_OFF_POLICY, "num_env_steps": 400, "n_timesteps": 2}),
        ("qmix", {**TINY_QMIX, "num_env_steps": 400}),
        (
            "happo",
            {
                **TINY_ON_POLICY,
                "num_env_steps": 4000,
                "ppo_epoch": 1,
                "critic_epoch": 1,
                "log_interval": NEVER,
                "checkpoint_interval": NEVER,
            },
        ),
    ],
    ids=["hasac", "haqo", "qmix", "happo"],
)
def test_progress_rows_every_few_percent_whatever_the_evaluation_interval(tmp_path, progress_lines, algo, overrides):
    total = overrides["num_env_steps"]
    # episodes of 4 steps: every row's window (4 vectorised steps or more) has finished ones
    runner = train(algo, "toy", str(tmp_path), {**overrides, "eval_interval": NEVER, "episode_limit": 4})
    rows = read_progress(runner.run_dir)
    steps = [0] + [int(row["env_steps"]) for row in rows]
    assert steps[-1] == total and steps == sorted(set(steps))
    assert max(b - a for a, b in zip(steps, steps[1:])) <= 0.025 * total
    # the training return and success rate are in the rows, the evaluation only in the last one
    # (and, on-policy, after the first rollout, as in HARL)
    assert all(row["train_episode_return"] != "" and row["train_success_rate"] != "" for row in rows[1:])
    evaluated = [row["eval_episode_return"] != "" for row in rows]
    assert evaluated == [algo == "happo"] + [False] * (len(rows) - 2) + [True]
    first = progress_lines()[0]
    assert "ETA" not in first and "fps" not in first
    if algo == "happo":
        assert first.startswith("[harl] 0/4,000 steps (0.0%) | collecting the first rollout |")
    if algo == "qmix":
        assert "| filling the replay buffer 0/4 episodes |" in first


def test_smax_says_it_compiles_before_its_first_steps(tmp_path, progress_lines, monkeypatch):
    pytest.importorskip("jaxmarl")
    from harl.envs.smax.smax_env import SMAXVecEnv

    class Compiling(Exception):
        pass

    def reset(self):  # the first reset compiles; the test stops the run there
        raise Compiling

    monkeypatch.setattr(SMAXVecEnv, "reset", reset)
    for algo, tiny in (("happo", TINY_ON_POLICY), ("hasac", TINY_OFF_POLICY)):
        with pytest.raises(Compiling):
            train(algo, "smax", str(tmp_path / algo), {**tiny, "map_name": "3m", "num_env_steps": 400})
    lines = progress_lines()
    assert (
        lines
        == [
            "[harl] 0/400 steps (0.0%) | compiling the batched environment | train return - | "
            "train win rate - | eval return - | eval win rate -"
        ]
        * 2
    )


def test_a_short_smax_run_compiles_then_shows_its_win_rates(tmp_path, progress_lines):
    pytest.importorskip("jaxmarl")
    runner = train("happo", "smax", str(tmp_path), {**TINY_ON_POLICY, "map_name": "3m", "num_env_steps": 120})
    lines = progress_lines()
    assert lines[0].startswith("[harl] 0/120 steps (0.0%) | compiling the batched environment | ")
    first_rate = next(i for i, line in enumerate(lines) if "ETA" in line)
    assert first_rate > 1 and "| 40/120" not in lines[first_rate]  # a rate needs two whole iterations
    assert "compiling the evaluation environment" in lines[1] or "first update" in lines[1]
    assert all(
        re.search(r"train win rate [\d.]+ \| eval return [-\d.]+ \| eval win rate [\d.]+", line)
        for line in lines[first_rate:]
    )
    assert _png_width(f"{runner.run_dir}/{CURVE_NAME}") == 1200  # return and win rate


def _png_width(path) -> int:
    return matplotlib.image.imread(str(path)).shape[1]


def test_learning_curve_draws_the_headline_metric_beside_the_return():
    rows = [
        {
            "env_steps": "100",
            "train_episode_return": "1.0",
            "eval_episode_return": "",
            "train_win_rate": "0.5",
            "eval_win_rate": "",
            "train_kills": "3",
        },
        {
            "env_steps": "200",
            "train_episode_return": "",
            "eval_episode_return": "2.0",
            "train_win_rate": "",
            "eval_win_rate": "0.75",
            "train_kills": "",
        },
    ]
    figure = learning_curve_figure(rows, "happo on smax 3m")
    assert [ax.get_ylabel() for ax in figure.axes] == ["episode return", "win rate"]
    assert [[line.get_label() for line in ax.get_lines()] for ax in figure.axes] == [["train", "eval"]] * 2
    no_metric = [{k: v for k, v in row.items() if "return" in k or k == "env_steps"} for row in rows]
    assert [ax.get_ylabel() for ax in learning_curve_figure(no_metric, "mpe").axes] == ["episode return"]
    assert learning_curve_figure([], "nothing yet") is None
    assert headline_metric_name(("goals", "score_rate")) == "score_rate"
    assert headline_metric_name(("coverage", "balance", "target_0")) == "coverage"
    assert headline_metric_name(()) is None and headline_metric_of_columns(rows[0]) == "win_rate"


def test_a_runs_picture_has_a_metric_panel_only_when_its_env_has_one(tmp_path):
    tiny = {**TINY_ON_POLICY, "num_env_steps": 80, "ppo_epoch": 1}
    toy = train("happo", "toy", str(tmp_path / "toy"), tiny)  # success rate
    mpe = train("happo", "pettingzoo_mpe", str(tmp_path / "mpe"), {**tiny, "episode_length": 25})  # none
    assert _png_width(f"{toy.run_dir}/{CURVE_NAME}") == 1200
    assert _png_width(f"{mpe.run_dir}/{CURVE_NAME}") == 600


def _fake_run(root, algo, seed, win_rates):
    run_dir = root / "smax" / "3m" / algo / "exp" / f"seed-{seed:05d}-2026"
    run_dir.mkdir(parents=True)
    lines = ["env_steps,wall_time,fps,train_episode_return,eval_episode_return,train_win_rate,eval_win_rate"]
    lines += [f"{1000 * (i + 1)},{i},1,0,{10 * w},,{w}" for i, w in enumerate(win_rates)]
    (run_dir / "progress.csv").write_text("\n".join(lines) + "\n")
    return str(run_dir)


def test_report_curves_draw_the_return_beside_a_metric_that_is_not_it(tmp_path):
    runs = {
        algo: [_fake_run(tmp_path, algo, seed, [0.1 * seed, 0.2 * seed]) for seed in (1, 2)]
        for algo in ("happo", "haqo")
    }
    wins = {algo: [read_run(d) for d in dirs] for algo, dirs in runs.items()}
    returns = {algo: [read_run(d, "eval_episode_return") for d in dirs] for algo, dirs in runs.items()}
    plot_comparison(wins, "3m", str(tmp_path / "one.png"))
    plot_comparison(wins, "3m", str(tmp_path / "two.png"), returns)
    assert (_png_width(tmp_path / "one.png"), _png_width(tmp_path / "two.png")) == (600, 1200)

    task = TaskSpec("smax", "3m", "3m", {}, "3m")
    specs = [RunSpec("smax", "3m", algo, seed, "", 2000, "exp") for algo in runs for seed in (1, 2)]
    finished = {(algo, seed): ("finished", d) for algo, dirs in runs.items() for seed, d in zip((1, 2), dirs)}
    for metric, width in (("eval_win_rate", 1200), ("eval_episode_return", 600)):
        experiment = Experiment("t", "T", metric, 1.0, [1, 2], ["happo", "haqo"], [task])
        with mock.patch("harl.experiments.report.run_state", lambda spec, log_dir: finished[(spec.algo, spec.seed)]):
            cells = gather(experiment, specs, str(tmp_path))
        assert [len(cell.return_runs) for cell in cells.values()] == ([2, 2] if width == 1200 else [0, 0])
        out = tmp_path / metric
        build_report(experiment, cells, str(out), "")
        assert _png_width(out / "curves" / "smax__3m.png") == width
