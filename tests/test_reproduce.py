"""examples/reproduce.py: experiment files, a resumable sweep that survives a killed sweep and
a killed run without repeating finished runs, Ray tasks equal to the local pool, and the report."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from e2e_helpers import read_progress

from harl.cli import parse_train_args
from harl.experiments.evaluation import evaluate_run
from harl.experiments.report import build_report, decimals_for, gather
from harl.experiments.spec import load_experiment, parse_only
from harl.experiments.sweep import run_state, run_sweep
from harl.utils.configs_tools import save_config
from harl.utils.errors import ConfigError
from harl.utils.stats import iqm

ROOT = Path(__file__).resolve().parents[1]
REPRODUCE = str(ROOT / "examples" / "reproduce.py")
TINY = [
    "--n_rollout_threads",
    "2",
    "--episode_length",
    "20",
    "--hidden_sizes",
    "[16, 16]",
    "--critic_epoch",
    "2",
    "--eval_interval",
    "2",
    "--eval_episodes",
    "2",
    "--n_eval_rollout_threads",
    "2",
    "--log_interval",
    "1",
    "--checkpoint_interval",
    "2",
    "--n_env_workers",
    "0",
]
TINY_PER_ALGO = {"happo": ["--ppo_epoch", "2"], "haa2c": ["--a2c_epoch", "2"]}


def tiny_experiment(tmp_path: Path, algos=("happo", "haa2c"), seeds=(1, 2)) -> Path:
    """An experiment file over the toy env with tiny tuned configs of its own."""
    for algo in algos:
        args, algo_args, env_args = parse_train_args(["--algo", algo, "--env", "toy"] + TINY + TINY_PER_ALGO[algo])
        folder = tmp_path / "tuned" / "toy" / "toy-discrete" / algo
        folder.mkdir(parents=True)
        save_config(args, algo_args, env_args, str(folder))
    path = tmp_path / "tiny.yaml"
    paper = ", ".join(f"{a}: [{i}.0, 0.5]" for i, a in enumerate(algos))
    path.write_text(
        "name: tiny\ntitle: Tiny\nmetric: return\nseeds: [" + ", ".join(map(str, seeds)) + "]\n"
        f"algorithms: [{', '.join(algos)}]\ntuned_dir: tuned\n"
        f"tasks:\n  - {{env: toy, task: toy-discrete, label: Toy, paper: {{{paper}}}}}\n"
    )
    return path


EXPERIMENT_FILES = sorted(
    str(p.relative_to(ROOT / "experiments").with_suffix("")) for p in (ROOT / "experiments").glob("*/*.yaml")
)


def test_every_experiment_file_is_tested():
    assert {"paper/table3", "ablations/occupation", "ablations/kl_linesearch"} <= set(EXPERIMENT_FILES)


@pytest.mark.parametrize("table", EXPERIMENT_FILES)
def test_the_experiment_files_load_with_a_tuned_config_per_cell(table):
    experiment = load_experiment(ROOT / "experiments" / f"{table}.yaml")
    runs = experiment.runs(seeds=3, num_env_steps=1000)
    assert len(runs) == 3 * len(experiment.cells()) and all(os.path.isfile(r.config) for r in runs)
    assert all(
        r.exp_name == (f"{experiment.name}_1000" if r.label == r.algo else f"{experiment.name}-{r.label}_1000")
        for r in runs
    )
    for run in runs:  # every file trains with the settings it was written with
        args, algo_args, env_args = parse_train_args(["--load_config", run.config])
        assert (args["algo"], args["env"]) == (run.algo, run.env)


def test_table1_skips_the_cells_the_paper_leaves_empty():
    experiment = load_experiment(ROOT / "experiments" / "paper" / "table1.yaml")
    humanoid = {a for t, a in experiment.cells() if t.task == "Humanoid-v2-17x1"}
    assert humanoid == {"mappo", "happo", "haqo"}


def test_table_decimals_follow_the_size_of_the_numbers():
    assert [decimals_for(np.array(v)) for v in ([-62.3, -30.0], [0.39, 0.66], [1.29, 0.3], [0.0], [], [1234.0])] == [
        1,
        3,
        2,
        1,
        1,
        1,
    ]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--stochastic", "--report"], "--stochastic re-evaluates the final policies: give --eval_episodes N"),
        (["--eval_episodes", "-1"], "--eval_episodes must be >= 0, got -1"),
        (["--budget_scale", "0"], "--budget_scale must be > 0, got 0"),
    ],
)
def test_bad_reproduce_options_stop_before_anything_runs(tmp_path, arguments, message):
    result = subprocess.run(
        [sys.executable, REPRODUCE, "experiments/paper/table3.yaml", "--log_dir", str(tmp_path), *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2 and message in result.stderr and not os.listdir(tmp_path)


def test_a_budget_no_run_can_train_with_refuses_the_whole_sweep_once(tmp_path):
    """Checked in-process before any run starts, as train.py would check each run."""
    path = tiny_experiment(tmp_path)  # 2 algorithms x 2 seeds, one rollout = 2 x 20 env steps
    for extra in ([], ["--dry_run"]):
        result = subprocess.run(
            [
                sys.executable,
                REPRODUCE,
                str(path),
                "--num_env_steps",
                "30",
                "--log_dir",
                str(tmp_path / "results"),
                *extra,
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.count("is smaller than one rollout") == 1
        assert "4 of 4 runs (happo on toy/toy-discrete, seed 1;" in result.stderr
        assert not (tmp_path / "results").exists()


def test_bad_experiment_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "missing.yaml")
    path = tiny_experiment(tmp_path)
    path.write_text(path.read_text().replace("happo, haa2c", "happo, hatd3"))
    with pytest.raises(ConfigError, match="no tuned config for 1 cell"):
        load_experiment(path)
    assert parse_only("algo=happo,haqo;task=a") == {"algo": {"happo", "haqo"}, "task": {"a"}}
    with pytest.raises(ConfigError, match="algo=..."):
        parse_only("colour=red")
    path = tiny_experiment(tmp_path / "diag")
    path.write_text(path.read_text() + 'diagnostics:\n  "KL": "median:agent*/kl"\n')
    with pytest.raises(ConfigError, match="diagnostic 'KL' must read '<mean|max>:"):
        load_experiment(path)
    path = tiny_experiment(tmp_path / "paper")
    path.write_text(path.read_text().replace("happo: [0.0, 0.5]", "happo: 94.7"))
    with pytest.raises(
        ConfigError, match=r"task toy-discrete: paper value of happo must be \[mean, std\] or null, not 94.7"
    ):
        load_experiment(path)


def _finished_weights(run_dirs):
    return {d: os.path.getmtime(os.path.join(d, "models", "actor_agent0.pt")) for d in run_dirs}


def test_a_killed_sweep_and_a_killed_run_finish_without_repeating_finished_runs(tmp_path):
    path = tiny_experiment(tmp_path, algos=("happo",))  # two runs: one finished, one killed
    log_dir = tmp_path / "results"
    command = [
        sys.executable,
        REPRODUCE,
        str(path),
        "--num_env_steps",
        "1200",
        "--workers",
        "1",
        "--log_dir",
        str(log_dir),
    ]
    experiment = load_experiment(path)
    runs = experiment.runs(num_env_steps=1200)
    # kill the whole sweep (and the run it is training) once the first run has finished and the
    # second has logged a few rows
    sweep = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.time() + 180
    while time.time() < deadline and sweep.poll() is None:
        states = [run_state(r, str(log_dir)) for r in runs]
        second = states[1][1] or next(iter(_seed_dirs_with_progress(runs[1], log_dir)), None)
        if states[0][0] == "finished" and second and len(read_progress(second)) >= 3:
            break
        time.sleep(0.2)
    assert sweep.poll() is None, sweep.stderr.read()[-2000:]
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait(timeout=10)
    first_done = _finished_weights([run_state(runs[0], str(log_dir))[1]])
    assert run_state(runs[1], str(log_dir))[0] == "resume"

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"already finished: {runs[0].key}" in again.stderr
    assert f"resuming: {runs[1].key}" in again.stderr
    assert _finished_weights(first_done) == first_done  # not run again
    assert all(run_state(r, str(log_dir))[0] == "finished" for r in runs)
    for run in runs:  # one directory per run: the killed one was continued, not restarted
        assert len(list(Path(run.run_parent(str(log_dir))).glob(f"seed-{run.seed:0>5}-*"))) == 1
    assert "| Toy |" in again.stdout and "paper 0 (0.5)" in again.stdout

    third = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert third.stderr.count("already finished") == len(runs)


@pytest.mark.parametrize("signum, to_group", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_a_signalled_sweep_checkpoints_its_running_runs_and_starts_no_other(tmp_path, signum, to_group):
    """The sweep alone is signalled (a scheduler, `kill`), or its whole group (Ctrl+C in a
    terminal): every running run saves a final checkpoint, no further run starts, and the sweep
    exits 128 + the signal with no process left."""
    path = tiny_experiment(tmp_path)
    log_dir = tmp_path / "results"
    runs = load_experiment(path).runs(num_env_steps=400000)
    sweep = subprocess.Popen(
        [
            sys.executable,
            REPRODUCE,
            str(path),
            "--num_env_steps",
            "400000",
            "--workers",
            "2",
            "--log_dir",
            str(log_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 180
    while time.time() < deadline and sweep.poll() is None:
        running = [next(iter(_seed_dirs_with_progress(r, log_dir)), None) for r in runs[:2]]
        if all(d and len(read_progress(d)) >= 2 for d in running):
            break
        time.sleep(0.2)
    assert sweep.poll() is None, sweep.stderr.read()[-2000:]
    if to_group:
        os.killpg(sweep.pid, signum)
    else:
        sweep.send_signal(signum)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 128 + signum, err[-3000:]
    assert f"{signal.Signals(signum).name} received" in err and "run the same command to resume" in err
    assert err.count("stopped with a checkpoint") == 2
    assert [run_state(r, str(log_dir))[0] for r in runs] == ["resume", "resume", "new", "new"]
    left = subprocess.run(["pgrep", "-f", str(log_dir)], capture_output=True, text=True).stdout.split()
    assert not left  # every train.py exited after its checkpoint


def test_runs_finished_earlier_are_counted_before_any_run_starts(tmp_path, monkeypatch, capfd):
    """A sweep whose finished runs come late in its order still reports them (and an ETA over
    the runs left) before it starts the first new one."""
    import harl.experiments.sweep as sweep

    runs = load_experiment(tiny_experiment(tmp_path, seeds=(1, 2))).runs(num_env_steps=200)
    finished = {runs[-1].key, runs[-2].key}
    monkeypatch.setattr(sweep, "run_state", lambda spec, log_dir: ("finished" if spec.key in finished else "new", None))
    monkeypatch.setattr(
        sweep, "execute_run", lambda fields, *rest: {"status": "done", "seconds": 1.0, "run_dir": None, "log": ""}
    )
    results = run_sweep("tiny", runs, str(tmp_path / "results"), workers=1, torch_threads=1)
    assert [r["status"] for r in results] == ["done"] * (len(runs) - 2) + ["skipped"] * 2
    lines = capfd.readouterr().err.splitlines()
    assert [line.split(" | ")[1].split(":")[0] for line in lines[:3]] == [
        "already finished",
        "already finished",
        "starting",
    ]
    assert f"2/{len(runs)} finished (2 earlier)" in lines[2]


def _seed_dirs_with_progress(spec, log_dir):
    parent = Path(spec.run_parent(str(log_dir)))
    return [str(d) for d in parent.glob(f"seed-{spec.seed:0>5}-*") if (d / "progress.csv").is_file()]


def test_ray_tasks_give_the_same_runs_as_the_local_pool(tmp_path):
    """Through reproduce.py, as a user runs it: a process of its own, which never imports JAX, so
    that Ray's start-up (it forks) cannot fork a multithreaded JAX (tests/test_jax_fork.py)."""
    pytest.importorskip("ray")
    path = tiny_experiment(tmp_path, algos=("happo",))
    runs = load_experiment(path).runs(num_env_steps=400)
    finals = {}
    for mode, option in (("local", []), ("ray", ["--ray", "auto"])):
        log_dir = str(tmp_path / mode)
        result = subprocess.run(
            [
                sys.executable,
                REPRODUCE,
                str(path),
                "--num_env_steps",
                "400",
                "--workers",
                "2",
                "--log_dir",
                log_dir,
                *option,
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        assert "os.fork()" not in result.stderr
        finals[mode] = [read_progress(run_state(r, log_dir)[1])[-1]["eval_episode_return"] for r in runs]
    # the same runs to the last digit: the same processes on the same machine, whoever starts them
    assert finals["ray"] == finals["local"]


def test_a_variant_column_runs_its_own_file_into_its_own_directories_and_column(tmp_path):
    path = tiny_experiment(tmp_path, seeds=(1,))
    args, algo_args, env_args = parse_train_args(["--algo", "happo", "--env", "toy"] + TINY + ["--ppo_epoch", "1"])
    folder = tmp_path / "tuned" / "toy" / "toy-discrete" / "happo_one_epoch"
    folder.mkdir(parents=True)
    save_config(args, algo_args, env_args, str(folder))
    path.write_text(path.read_text().replace("algorithms: [happo, haa2c]", "algorithms: [happo, happo_one_epoch]"))
    experiment = load_experiment(path)
    runs = experiment.runs(num_env_steps=200)
    assert [(r.algo, r.label, r.exp_name) for r in runs] == [
        ("happo", "happo", "tiny_200"),
        ("happo", "happo_one_epoch", "tiny-happo_one_epoch_200"),
    ]
    assert [r.algo for r in experiment.runs(num_env_steps=200, only=parse_only("algo=happo_one_epoch"))] == ["happo"]
    log_dir = str(tmp_path / "results")
    assert all(r["status"] == "done" for r in run_sweep("tiny", runs, log_dir, workers=1, torch_threads=1))
    cells = gather(experiment, runs, log_dir)
    assert {key: len(cell.runs) for key, cell in cells.items()} == {
        ("toy-discrete", "happo"): 1,
        ("toy-discrete", "happo_one_epoch"): 1,
    }
    dirs = [run_state(r, log_dir)[1] for r in runs]
    assert dirs[0] != dirs[1] and all(f"{os.sep}happo{os.sep}" in d for d in dirs)
    assert parse_train_args(["--resume", dirs[1]])[1]["algo"]["ppo_epoch"] == 1


def test_the_report_puts_the_paper_beside_ours_with_intervals(tmp_path):
    path = tiny_experiment(tmp_path, seeds=(1, 2, 3))
    experiment = load_experiment(path)
    runs = experiment.runs(num_env_steps=400)
    log_dir = str(tmp_path / "results")
    results = run_sweep("tiny", runs, log_dir, workers=2, torch_threads=1)
    assert all(r["status"] == "done" for r in results)
    cells = gather(experiment, runs, log_dir)
    assert [len(c.runs) for c in cells.values()] == [3, 3]
    cache = tmp_path / "reevaluations.json"
    reevaluated = gather(experiment, runs[:1], log_dir, eval_episodes=4, eval_seed=7, cache_path=str(cache))
    single = reevaluated[("toy-discrete", "happo")]
    expected = evaluate_run(run_state(runs[0], log_dir)[1], 4, 7)["eval_episode_return"]
    assert single.finals.tolist() == [expected] and cache.is_file()
    moved = str(tmp_path / "results_elsewhere")  # a results folder copied to another machine
    shutil.copytree(log_dir, moved)
    with mock.patch("harl.experiments.report.evaluate_run", side_effect=AssertionError("cached run re-evaluated")):
        assert gather(experiment, runs[:1], moved, 4, 7, str(cache))[("toy-discrete", "happo")].finals.tolist() == [
            expected
        ]
    sampled = gather(experiment, runs[:1], log_dir, 4, 7, str(cache), explore=True)[("toy-discrete", "happo")]
    assert sampled.finals.tolist() == [
        evaluate_run(run_state(runs[0], log_dir)[1], 4, 7, explore=True)["eval_episode_return"]
    ]
    assert len(json.loads(cache.read_text())) == 2  # a key of its own beside the deterministic one
    out = tmp_path / "report"
    experiment.diagnostics.update({"mean fps": ("mean", "f*s"), "peak fps": ("max", "fps")})
    cells = gather(experiment, runs, log_dir)
    fps = [[float(r["fps"]) for r in read_progress(run_state(spec, log_dir)[1]) if r["fps"]] for spec in runs]
    happo_fps = [np.mean(f) for spec, f in zip(runs, fps) if spec.algo == "happo"]
    assert np.allclose(cells[("toy-discrete", "happo")].diagnostics["mean fps"], happo_fps)
    assert np.allclose(
        cells[("toy-discrete", "happo")].diagnostics["peak fps"],
        [max(f) for spec, f in zip(runs, fps) if spec.algo == "happo"],
    )
    text = build_report(experiment, cells, str(out), "Budget: 400 env steps per run.")
    assert "Training diagnostics" in text and f"{np.mean(happo_fps):.3g} ({np.std(happo_fps):.2g})" in text
    finals = cells[("toy-discrete", "happo")].finals
    digits = decimals_for(np.concatenate([c.finals for c in cells.values()]))
    assert f"{finals.mean():.{digits}f} ({finals.std():.{digits}f})" in text and "paper 0 (0.5)" in text
    assert "Interquartile mean" in text and "Sample efficiency" in text
    rows = (out / "table.csv").read_text().splitlines()
    assert rows[0].startswith("task,algo,seeds,mean,std,iqm,iqm_ci_low,iqm_ci_high")
    low, high = (float(x) for x in rows[1].split(",")[6:8])
    # up to rounding: when the seeds' finals are equal, the IQM and both ends are that one value
    # computed by different matmul kernels (1 row vs n_boot rows), a few ulps apart on some CPUs
    point = float(rows[1].split(",")[5])
    assert low - 1e-12 * abs(point) <= point <= high + 1e-12 * abs(point)
    assert np.isclose(float(rows[1].split(",")[3]), finals.mean())
    assert (out / "table.tex").read_text().startswith("\\begin{tabular}")
    assert (out / "curves" / "toy__toy-discrete.png").is_file()
    assert rows[0].endswith(",per_seed,planned_seeds") and rows[1].endswith(",3")

    # a sweep still under way: HAPPO with one finished seed of one planned, HAA2C with 3 of 4
    unfinished = [r for r in experiment.runs(seeds=4, num_env_steps=400) if r.algo == "haa2c"]
    partial = gather(experiment, runs[:1] + unfinished, log_dir)
    assert [(c.planned, len(c.runs)) for c in partial.values()] == [(1, 1), (4, 3)]
    text = build_report(experiment, partial, str(tmp_path / "partial"), "Budget: 400 env steps per run.")
    haa2c = partial[("toy-discrete", "haa2c")].finals
    assert " (one seed)<br>" in text and f"({haa2c.std():.{digits}f}), 3 of 4 seeds" in text
    iqm_row = next(line for line in text.split("Interquartile mean")[1].splitlines() if line.startswith("| Toy |"))
    happo_iqm, haa2c_iqm = (c.strip() for c in iqm_row.strip("|").split("|")[1:])
    assert happo_iqm == "-" and haa2c_iqm.startswith(f"{iqm(haa2c):.{digits}f} [")  # no interval from one seed
    happo_row = (tmp_path / "partial" / "table.csv").read_text().splitlines()[1].split(",")
    assert happo_row[:3] == ["toy-discrete", "happo", "1"] and happo_row[4:8] == ["", "", "", ""]


def _staged(repo: Path) -> list[str]:
    return sorted(
        subprocess.run(
            ["git", "diff", "--cached", "--name-only"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.split()
    )


def test_runs_are_kept_for_a_commit_finished_without_checkpoints_stopped_with_one(tmp_path):
    """scripts/keep_runs.sh stages a finished run's config, curve and final weights (results/ is
    git-ignored), not its checkpoint or TensorBoard logs; a stopped run only with --stopped, then
    with its checkpoint when that is small; once the stopped run finishes, its checkpoint leaves."""
    repo = tmp_path / "repo"
    finished = repo / "results" / "football" / "t" / "happo" / "x" / "seed-00001-a"
    stopped = repo / "results" / "football" / "t" / "happo" / "x" / "seed-00002-b"
    for run_dir in (finished, stopped):
        (run_dir / "models").mkdir(parents=True)
        (run_dir / "logs").mkdir()
        for name in (
            "config.json",
            "progress.csv",
            "learning_curve.png",
            "models/checkpoint.pt",
            "logs/events.out.tfevents.1",
        ):
            (run_dir / name).write_text("x")
    for name in ("models/actor_agent0.pt", "models/actor_agent1.pt", "models/critic_agent.pt"):
        (finished / name).write_text("x")
    (repo / "results" / "reports" / "sweep").mkdir(parents=True)
    (repo / "results" / "reports" / "sweep" / "reevaluations.json").write_text("{}")
    (repo / ".gitignore").write_text("results/*\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    script = Path(__file__).resolve().parents[1] / "scripts" / "keep_runs.sh"
    out = subprocess.run(
        ["bash", str(script), "results/football", "results/reports/sweep"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    base, other = "results/football/t/happo/x/seed-00001-a/", "results/football/t/happo/x/seed-00002-b/"
    light = ["config.json", "progress.csv", "learning_curve.png"]
    finals = [
        base + name for name in light + ["models/actor_agent0.pt", "models/actor_agent1.pt", "models/critic_agent.pt"]
    ]
    assert _staged(repo) == sorted(finals + ["results/reports/sweep/reevaluations.json"])
    assert "1 finished and 0 stopped run(s) staged" in out

    too_big = subprocess.run(
        ["bash", str(script), "--stopped", "results/football"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "KEEP_RUNS_MAX_MB": "0"},
    )
    assert too_big.returncode == 0 and "left out stopped" in too_big.stderr and "1 MB (> 0 MB" in too_big.stderr
    assert not [name for name in _staged(repo) if name.startswith(other)]
    out = subprocess.run(
        ["bash", str(script), "--stopped", "results/football"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    assert "1 finished and 1 stopped run(s) staged" in out
    assert [name for name in _staged(repo) if name.startswith(other)] == sorted(
        other + name for name in light + ["models/checkpoint.pt"]
    )

    # the stopped run is resumed on another machine and finishes: its checkpoint is dropped
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "kept"], cwd=repo, check=True)
    (stopped / "models" / "actor_agent0.pt").write_text("y")
    subprocess.run(["bash", str(script), "results/football"], cwd=repo, capture_output=True, text=True, check=True)
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert f"D  {other}models/checkpoint.pt" in status and f"A  {other}models/actor_agent0.pt" in status

    for bad in (["results/nothing"], [], ["--stopped"]):
        refused = subprocess.run(["bash", str(script), *bad], cwd=repo, capture_output=True, text=True)
        assert refused.returncode == 2 and ("no such folder" in refused.stderr or "usage" in refused.stderr)
