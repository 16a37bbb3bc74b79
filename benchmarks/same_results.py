"""Check that a change left training untouched: seeded HAPPO, HASAC, HAQO and QMIX runs of the
working tree against the same runs of another revision, on this machine.

Usage::

    python benchmarks/same_results.py --base 808b186   # 6 to 9 minutes on 2 cores

The base revision is checked out with ``git worktree`` into a scratch folder and each side runs
with its own ``harl`` (``PYTHONPATH``), so the editable install does not mix them. For each
algorithm it compares every value of ``progress.csv`` except timings, and the final policy's
re-evaluation (``examples/evaluate.py``, 40 episodes); it prints one line per algorithm and exits
1 if anything differs. Runs on MPE simple_spread discrete with the tuned files and small budgets;
a refactor that changes the order of random draws shows up here as a difference.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASK = "tuned_configs/pettingzoo_mpe/simple_spread_v2-discrete"
# algorithm -> budget flags: long enough for several updates, short enough to run in minutes
RUNS = {
    "happo": ["--num_env_steps", "20000"],
    "hasac": ["--num_env_steps", "8000", "--warmup_steps", "2000"],
    "haqo": ["--num_env_steps", "8000", "--warmup_steps", "2000"],
    "qmix": ["--num_env_steps", "10000"],
}
TIMINGS = ("wall_time", "fps")


def run(command: list[str], cwd: str, env: dict[str, str]) -> str:
    """``command``'s stdout; on failure the end of its output and exit 1 (no traceback)."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"failed in {cwd}: {' '.join(command)}\n{(result.stdout + result.stderr)[-2000:]}")
    return result.stdout


def run_side(tree: str, log_dir: str, seed: int) -> dict[str, tuple[list[dict], str]]:
    """Train and re-evaluate every algorithm with ``tree``'s code; per algorithm the progress rows
    and the evaluation table's row."""
    env = {**os.environ, "PYTHONPATH": tree}
    results = {}
    for algo, budget in RUNS.items():
        train = [sys.executable, "examples/train.py", "--load_config", f"{TASK}/{algo}/config.json", "--exp_name"]
        train += ["same", "--seed", str(seed), "--torch_threads", "1", "--use_eval", "False", "--log_dir", log_dir]
        run(train + budget, tree, env)
        run_dir = glob.glob(os.path.join(log_dir, "pettingzoo_mpe", "*", algo, "same", "seed-*"))[0]
        evaluation = run([sys.executable, "examples/evaluate.py", run_dir, "--eval_episodes", "40"], tree, env)
        row = next(line for line in evaluation.splitlines() if line.startswith(f"| {algo} |"))
        with open(os.path.join(run_dir, "progress.csv")) as f:
            results[algo] = (list(csv.DictReader(f)), row.rsplit("|", 3)[0])  # without the run's path
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the revision to compare the working tree with")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    known = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}"], cwd=ROOT, capture_output=True
    )
    if known.returncode:
        parser.error(f"--base {args.base}: not a revision of this repository")
    with tempfile.TemporaryDirectory(prefix="same-results-") as scratch:
        base_tree = os.path.join(scratch, "base")
        run(["git", "worktree", "add", "--detach", base_tree, args.base], ROOT, dict(os.environ))
        try:
            base = run_side(base_tree, os.path.join(scratch, "base-runs"), args.seed)
            head = run_side(ROOT, os.path.join(scratch, "head-runs"), args.seed)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", base_tree], cwd=ROOT, check=False)
    same = True
    for algo in RUNS:
        (rows_a, eval_a), (rows_b, eval_b) = base[algo], head[algo]
        differing = [
            (a["env_steps"], key)
            for a, b in zip(rows_a, rows_b)
            for key in a
            if not key.startswith("time/") and key not in TIMINGS and a[key] != b.get(key)
        ]
        equal = len(rows_a) == len(rows_b) and not differing and eval_a == eval_b
        same &= equal
        print(f"{algo}: {'same' if equal else 'DIFFERENT'}; {len(rows_a)} progress rows; evaluation {eval_b.strip()}")
        if differing:
            print(f"  first differing values (env step, key): {differing[:5]}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
