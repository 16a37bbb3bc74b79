"""Raw vectorised-environment throughput.

MPE and MaMuJoCo: in-process vs worker processes, random actions prepared in advance so only
the environment side is timed. SMAX: the batched vector env (all battles in one jitted call)
against the same battles stepped one by one, with random *valid* actions drawn from the
availability masks every step (the same drawing code for both); JAX's compile time is reported
separately and kept out of the rates. Settings are measured in turn, ``--repeats`` times, and
the best rate is kept, which discounts other load on a shared machine.

    python benchmarks/bench_envs.py [--n-envs 20] [--steps 300] [--repeats 3]
    python benchmarks/bench_envs.py --only smax [--smax-map 3s5z] [--smax-envs 1 20 32]
    python benchmarks/bench_envs.py --only football [--football-envs 8] [--football-workers 1 2 4]

Football (``bash scripts/install_football.sh`` first) is measured only when asked: its engine
takes milliseconds per step, so the comparison is between numbers of worker processes, with
new random actions every step (a repeated action ends academy episodes at once).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from gymnasium import spaces

from harl.envs import get_task_name, make_train_env
from harl.runners.off_policy_base_runner import random_actions

CASES = [
    ("pettingzoo_mpe", {"scenario": "simple_spread_v2", "continuous_actions": True}),
    ("mamujoco", {"scenario": "HalfCheetah-v2", "agent_conf": "2x3"}),
]


def measure(env_name: str, env_args: dict, n_envs: int, n_workers: int, steps: int) -> float:
    """Vector steps per second over ``steps`` steps after a short warm-up."""
    vec = make_train_env(env_name, 1, n_envs, env_args, n_workers)
    try:
        vec.reset()
        rng = np.random.default_rng(0)
        actions = []
        for space in vec.action_spaces:
            if isinstance(space, spaces.Discrete):
                actions.append(rng.integers(space.n, size=(n_envs, 1)))
            else:
                actions.append(rng.normal(size=(n_envs, *space.shape)).astype(np.float32))
        for _ in range(20):
            vec.step(actions)
        start = time.perf_counter()
        for _ in range(steps):
            vec.step(actions)
        return steps / (time.perf_counter() - start)
    finally:
        vec.close()


def measure_football(n_envs: int, n_workers: int, steps: int) -> float:
    """Env steps per second of academy_3_vs_1_with_keeper in ``n_workers`` processes."""
    vec = make_train_env("football", 1, n_envs, {}, n_workers)
    try:
        vec.reset()
        rng = np.random.default_rng(0)
        draws = rng.integers(vec.action_spaces[0].n, size=(steps + 10, vec.n_agents, n_envs, 1))
        for actions in draws[:10]:
            vec.step(list(actions))
        start = time.perf_counter()
        for actions in draws[10:]:
            vec.step(list(actions))
        return steps * n_envs / (time.perf_counter() - start)
    finally:
        vec.close()


def measure_smax(map_name: str, n_envs: int, batched: bool, steps: int) -> tuple[float, float]:
    """``(env steps per second, seconds to build, compile and take the first two steps)``."""
    start = time.perf_counter()
    vec = make_train_env("smax", 1, n_envs, {"map_name": map_name, "state_type": "EP", "batched_step": batched}, 0)
    np.random.seed(0)
    spaces_, n = vec.action_spaces, vec.n_envs
    _, _, avail = vec.reset()
    for _ in range(2):
        avail = vec.step(random_actions(spaces_, avail, n)).available_actions
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        avail = vec.step(random_actions(spaces_, avail, n)).available_actions
    rate = steps * n_envs / (time.perf_counter() - start)
    vec.close()
    return rate, setup


def smax_table(map_name: str, env_counts: list[int], steps: int, repeats: int) -> str:
    """Markdown table: batched vs one-by-one SMAX env steps per second per environment count."""
    best: dict[tuple[int, bool], float] = {}
    setups: dict[tuple[int, bool], float] = {}
    for _ in range(repeats):
        for n_envs in env_counts:
            for batched in (True, False):  # alternating pairs
                rate, setup = measure_smax(map_name, n_envs, batched, steps)
                best[n_envs, batched] = max(best.get((n_envs, batched), 0.0), rate)
                setups.setdefault((n_envs, batched), setup)  # the first run compiles
    lines = [
        f"SMAX {map_name}, random valid actions, auto-reset included (best of {repeats}):",
        "",
        "| environments | batched env steps/s | one-by-one env steps/s | ratio | build + compile at first use "
        "(batched / one-by-one; one-by-one shares the batch-1 compilation) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n_envs in env_counts:
        b, o = best[n_envs, True], best[n_envs, False]
        lines.append(
            f"| {n_envs} | {b:,.0f} | {o:,.0f} | {b / o:.1f}x "
            f"| {setups[n_envs, True]:.1f} s / {setups[n_envs, False]:.1f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the selected families and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-envs", type=int, default=20, help="parallel environments (MPE, MaMuJoCo)")
    parser.add_argument("--steps", type=int, default=300, help="timed vector steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting; best is kept")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="n_env_workers values to compare (0 = in-process; MPE, MaMuJoCo)",
    )
    parser.add_argument(
        "--only",
        choices=["classic", "smax", "football"],
        default=None,
        help="one family only (default: classic and smax)",
    )
    parser.add_argument("--smax-map", default="3s5z", help="SMAX map")
    parser.add_argument("--smax-envs", type=int, nargs="+", default=[1, 20, 32], help="SMAX environment counts")
    parser.add_argument("--football-envs", type=int, default=8, help="Football environments")
    parser.add_argument("--football-workers", type=int, nargs="+", default=[1, 2, 4], help="Football worker processes")
    args = parser.parse_args()
    if args.only == "football":
        best = {w: 0.0 for w in args.football_workers}
        for _ in range(args.repeats):
            for w in args.football_workers:
                best[w] = max(best[w], measure_football(args.football_envs, w, args.steps))
        print(f"| env | task | worker processes | env steps/s (E = {args.football_envs}) |")
        print("| --- | --- | --- | --- |")
        for w, rate in best.items():
            print(f"| football | academy_3_vs_1_with_keeper | {w} | {rate:,.0f} |")
        return
    if args.only != "smax":
        settings = [(env, env_args, w) for env, env_args in CASES for w in args.workers]
        best = [0.0] * len(settings)
        for _ in range(args.repeats):
            for k, (env_name, env_args, n_workers) in enumerate(settings):
                rate = measure(env_name, env_args, args.n_envs, n_workers, args.steps)
                best[k] = max(best[k], rate)
        print(f"| env | task | n_env_workers | vector steps/s | env steps/s (E = {args.n_envs}) |")
        print("| --- | --- | --- | --- | --- |")
        for (env_name, env_args, n_workers), rate in zip(settings, best):
            task = get_task_name(env_name, env_args)
            label = "0 (in-process)" if n_workers == 0 else str(n_workers)
            print(f"| {env_name} | {task} | {label} | {rate:,.0f} | {rate * args.n_envs:,.0f} |")
    if args.only != "classic":
        print(smax_table(args.smax_map, args.smax_envs, args.steps, args.repeats))


if __name__ == "__main__":
    main()
