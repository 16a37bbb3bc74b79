"""The benchmark script's comparison mode: the baseline run gets the same overrides from its own
config, and the ratios are the candidate's over the baseline's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "bench_train", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
)
bench_train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_train)


def test_baseline_argv_swaps_the_config_and_keeps_the_overrides():
    argv = [
        "--load_config",
        "haqo.json",
        "--algo",
        "haqo",
        "--env=pettingzoo_mpe",
        "--num_env_steps",
        "1000",
        "--seed",
        "3",
    ]
    assert bench_train.with_config(argv, "happo.json") == [
        "--load_config",
        "happo.json",
        "--num_env_steps",
        "1000",
        "--seed",
        "3",
    ]


def _result(algo: str, s_per_1k: float, rss: float, gpu: float) -> dict:
    return {
        "algo": algo,
        "task": "t",
        "env_steps": 1000,
        "device": "cpu",
        "s_per_1k_steps": s_per_1k,
        "peak_rss_mib": rss,
        "peak_gpu_mib": gpu,
    }


def test_ratios_are_candidate_over_baseline():
    text = bench_train.format_ratios([(_result("haqo", 0.5, 750.0, 0.0), _result("happo", 0.25, 500.0, 0.0))])
    assert "wall time per env step: 2.00x" in text and "peak RSS (trainer): 1.50x" in text
    assert "GPU" not in text
    text = bench_train.format_ratios([(_result("haqo", 0.5, 750.0, 30.0), _result("happo", 0.25, 500.0, 20.0))])
    assert "peak GPU memory: 1.50x" in text


def test_repeated_pairs_report_each_ratio_and_their_median():
    pairs = [(_result("haqo", t, 600.0, 0.0), _result("happo", 0.25, 500.0, 0.0)) for t in (0.5, 0.45, 0.55)]
    text = bench_train.format_ratios(pairs)
    assert "wall time per env step: median 2.00x (pairs: 2.00x, 1.80x, 2.20x)" in text
    assert "peak RSS (trainer): median 1.20x" in text


def test_diffusion_bench_prints_a_row_per_width_and_step_count():
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_diffusion.py"
    result = subprocess.run(
        [sys.executable, str(script), "--repeats", "1", "--steps", "2", "4", "--hidden", "16", "--batch", "8"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 20 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["2", "4"] and rows[0].endswith("| 1.00x |")


def test_distillation_control_teacher_and_one_checkpoint():
    """benchmarks/distil_discrete_actor.py: the teacher never picks an unavailable action, and a
    run reports (sampled / evaluation) agreement at its checkpoints."""
    import torch

    spec = importlib.util.spec_from_file_location(
        "distil_discrete_actor", Path(__file__).resolve().parents[1] / "benchmarks" / "distil_discrete_actor.py"
    )
    distil = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(distil)
    weights = torch.randn(distil.OBS_DIM, distil.N_ACTIONS)
    _, avail, teacher = distil.teacher_batch(weights, torch.Generator().manual_seed(0))
    assert avail.gather(1, teacher.unsqueeze(1)).eq(1).all()
    (cell,) = distil.run(distil.VARIANTS["x0_conditioned"], updates=distil.CHECKPOINTS[0], seed=0)
    sampled, evaluated = (float(v) for v in cell.split(" / "))
    assert 0.0 <= sampled <= 1.0 and 0.0 <= evaluated <= 1.0
