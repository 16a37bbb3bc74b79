"""Measure training throughput and peak memory of one algorithm on one task.

Usage (any train.py option or --KEY VALUE override works)::

    python benchmarks/bench_train.py --algo happo --env pettingzoo_mpe \
        --load_config tuned_configs/pettingzoo_mpe/simple_spread_v2-continuous/happo/config.json \
        --num_env_steps 100000

Each measurement runs in a fresh subprocess so that peak memory is that run's alone. Evaluation
is switched off unless ``--use_eval True`` is given, so FPS is training throughput. The output is
a Markdown table row that can be pasted into the README.

``--baseline CONFIG`` measures a second run from another config (its algorithm included) with the
same command-line overrides, and prints the ratios of wall time per env step and of peak memory,
e.g. HAQO against HAPPO on the same task and budget (``--repeats N`` measures the pair N times,
alternating, and prints the median ratios)::

    python benchmarks/bench_train.py \
        --load_config tuned_configs/pettingzoo_mpe/simple_spread_v2-continuous/haqo/config.json \
        --baseline tuned_configs/pettingzoo_mpe/simple_spread_v2-continuous/happo/config.json \
        --num_env_steps 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

HEADER = (
    "| algo | env | task | device | env steps | wall s | FPS | s / 1k steps | updates/s | "
    "peak RSS MiB (trainer) | peak RSS MiB (largest env worker) | peak GPU MiB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _child(argv: list[str], out_path: str) -> None:
    """Train in this process and write the measurements to ``out_path`` as JSON."""
    from harl.cli import parse_train_args
    from harl.runners import RUNNER_REGISTRY

    parsed = parse_train_args(argv)
    assert parsed is not None, "--help/--list_keys are not benchmarks"
    args, algo_args, env_args = parsed
    runner = RUNNER_REGISTRY[args["algo"]](args, algo_args, env_args)
    if runner.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        runner.run()
    finally:
        runner.close()
    wall = time.perf_counter() - start
    steps = runner.total_steps
    result = {
        "algo": args["algo"],
        "env": args["env"],
        "task": runner.task_name,
        "device": str(runner.device),
        "torch_threads": torch.get_num_threads(),
        "env_steps": steps,
        "wall_s": wall,
        "fps": steps / wall,
        "s_per_1k_steps": 1000.0 * wall / steps,
        # gradient updates of the off-policy runners (on-policy runners train per rollout)
        "updates_per_s": getattr(runner, "total_it", 0) / wall,
        # ru_maxrss is in KiB on Linux; the children figure is the largest single child.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "peak_gpu_mib": (torch.cuda.max_memory_allocated() / 2**20) if runner.device.type == "cuda" else 0.0,
        "run_dir": runner.run_dir,
    }
    with open(out_path, "w", encoding="utf-8") as file:
        json.dump(result, file)


def measure(argv: list[str]) -> dict:
    """Run one benchmark in a fresh interpreter and return its measurements."""
    if "--use_eval" not in argv:
        argv = argv + ["--use_eval", "False"]
    if "--log_dir" not in argv:
        argv = argv + ["--log_dir", os.path.join(tempfile.gettempdir(), "harl_bench_results")]
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out_path = handle.name
    try:
        subprocess.run([sys.executable, __file__, "--_child", out_path, *argv], check=True)
        with open(out_path, encoding="utf-8") as file:
            return json.load(file)
    finally:
        os.remove(out_path)


def format_row(r: dict) -> str:
    """One Markdown table row of :data:`HEADER`."""
    return (
        f"| {r['algo']} | {r['env']} | {r['task']} | {r['device']} | {r['env_steps']} | "
        f"{r['wall_s']:.1f} | {r['fps']:.0f} | {r['s_per_1k_steps']:.3f} | {r['updates_per_s']:.1f} | "
        f"{r['peak_rss_mib']:.0f} | {r['peak_rss_children_mib']:.0f} | {r['peak_gpu_mib']:.0f} |"
    )


def with_config(argv: list[str], config: str) -> list[str]:
    """``argv`` with ``--load_config`` replaced by ``config`` and ``--algo``/``--env`` dropped (the
    config names them)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--load_config", "--algo", "--env"):
            skip = True
        elif not arg.startswith(("--load_config=", "--algo=", "--env=")):
            out.append(arg)
    return ["--load_config", config, *out]


def format_ratios(pairs: list[tuple[dict, dict]]) -> str:
    """How many times the baseline's wall time per env step and peak memory the measured config
    takes, for each ``(measured, baseline)`` pair and, with several pairs, their median (the
    machine's speed drifts between measurements; alternating pairs see the same drift)."""
    result, baseline = pairs[0]
    lines = [
        f"{result['algo']} / {baseline['algo']} on {result['task']} "
        f"({result['env_steps']} env steps, {result['device']}):"
    ]
    measures = [("wall time per env step", "s_per_1k_steps"), ("peak RSS (trainer)", "peak_rss_mib")]
    if baseline["peak_gpu_mib"] > 0:
        measures.append(("peak GPU memory", "peak_gpu_mib"))
    for label, key in measures:
        ratios = [r[key] / b[key] for r, b in pairs]
        if len(ratios) == 1:
            lines.append(f"  {label}: {ratios[0]:.2f}x")
        else:
            each = ", ".join(f"{x:.2f}x" for x in ratios)
            lines.append(f"  {label}: median {statistics.median(ratios):.2f}x (pairs: {each})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="CONFIG",
        help="also measure this config with the same overrides and print the ratios",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="with --baseline: measure the pair this many times, alternating, and "
        "print the median ratios (the machine's speed can drift between runs)",
    )
    known, rest = parser.parse_known_args()
    if known._child:
        _child(rest, known._child)
        return
    runs = [rest] + ([with_config(rest, known.baseline)] if known.baseline else [])
    from harl.cli import parse_train_args
    from harl.utils.errors import ConfigError

    for name, argv in zip(("measured", "--baseline"), runs):
        try:  # an override one config does not know fails now, not after the first measurement
            parse_train_args(argv)
        except ConfigError as err:
            parser.error(f"the {name} config does not accept these options: {err}")
    if known.repeats < 1 or (known.repeats > 1 and not known.baseline):
        parser.error("--repeats must be >= 1, and more than 1 needs --baseline")
    results = [measure(argv) for _ in range(known.repeats) for argv in runs]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none available"
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"GPU: {gpu}, torch {torch.__version__}, torch threads {results[0]['torch_threads']}"
    )
    print(HEADER)
    for result in results:
        print(format_row(result))
    if known.baseline:
        print()
        print(format_ratios(list(zip(results[::2], results[1::2]))))


if __name__ == "__main__":
    main()
