"""Raw vectorised-environment throughput: in-process vs worker processes.

Prints a markdown table of vector steps per second (one vector step = one step of every
environment) and environment steps per second, with random actions prepared in advance so
only the environment side is timed. The settings are measured in turn, ``--repeats`` times,
and the best rate is kept, which discounts other load on a shared machine.

    python benchmarks/bench_envs.py [--n-envs 20] [--steps 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from gymnasium import spaces

from harl.envs import get_task_name, make_train_env

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


def main() -> None:
    """Run every case with 0 (in-process), 1 and 2 workers and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-envs", type=int, default=20, help="parallel environments")
    parser.add_argument("--steps", type=int, default=300, help="timed vector steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting; best is kept")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="n_env_workers values to compare (0 = in-process)",
    )
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
