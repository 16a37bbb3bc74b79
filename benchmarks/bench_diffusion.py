"""Time HAQO's sampling pass and actor update at realistic sizes; prints a markdown table.

Sizes follow MPE simple_spread (3 agents, observation 18, state 54, Box(5) actions) with the
default twin critic: the behaviour pass draws ``behavior_candidates`` candidates for every agent
of every environment and picks each agent's best by ``min(Q1, Q2)``; the actor update is one
agent's :meth:`HAQO.train` on a batch of ``batch_size`` states (candidates, Adam steps, KL line
search).

    python benchmarks/bench_diffusion.py [--threads 1] [--device cpu] [--repeats 20]
"""
from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

from harl.algorithms.actors.haqo import HAQO, select_joint_actions
from harl.algorithms.critics.twin_continuous_q_critic import TwinContinuousQCritic
from harl.utils.configs_tools import get_defaults_yaml_args

N_AGENTS, OBS_DIM, STATE_DIM, ACT_DIM = 3, 18, 54, 5


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bench(
    n_envs: int, steps: int, hidden: list[int], batch: int, repeats: int, device: torch.device
) -> tuple[float, float]:
    """Median ms of one behaviour pass (all agents, ``n_envs`` envs) and one agent's update."""
    algo_args, _ = get_defaults_yaml_args("haqo", "pettingzoo_mpe")
    args = {**algo_args["model"], **algo_args["algo"], "n_timesteps": steps, "hidden_sizes": hidden}
    obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    act_space = gym.spaces.Box(0.0, 1.0, (ACT_DIM,), np.float32)
    share_space = gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)
    actors = [HAQO(args, obs_space, act_space, device) for _ in range(N_AGENTS)]
    critic = TwinContinuousQCritic(
        {**algo_args["train"], **args}, share_space, [act_space] * N_AGENTS, N_AGENTS, "EP", device
    )

    share_obs = torch.randn(n_envs, STATE_DIM, device=device)
    obs = [torch.randn(n_envs, OBS_DIM, device=device) for _ in range(N_AGENTS)]

    def min_q(states: torch.Tensor):
        return lambda joint: critic.critic(states, joint).min(-1, keepdim=True).values

    def behaviour() -> None:
        with torch.no_grad():
            select_joint_actions(actors, obs, [None] * N_AGENTS, args["behavior_candidates"], min_q(share_obs))

    batch_states = torch.randn(batch, STATE_DIM, device=device)
    batch_obs = torch.randn(batch, OBS_DIM, device=device)
    joint = select_joint_actions(actors, [batch_obs] * N_AGENTS, [None] * N_AGENTS, 1).critic

    def update() -> None:
        actors[0].train(batch_obs, joint, 0, min_q(batch_states))

    return timed(behaviour, repeats, device), timed(update, max(3, repeats // 4), device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    cli = parser.parse_args()
    torch.set_num_threads(cli.threads)
    device = torch.device(cli.device)
    torch.manual_seed(0)
    print(f"device {device}, torch threads {torch.get_num_threads()}, N={N_AGENTS} agents, K_b=4, K=4, batch 1000\n")
    print("| E envs | T | hidden | behaviour pass, all agents (ms) | per env step (ms) | actor update (ms) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for hidden in ([128, 128], [256, 256]):
        for steps in (8, 16):
            sample_ms, update_ms = bench(20, steps, hidden, 1000, cli.repeats, device)
            print(f"| 20 | {steps} | {hidden} | {sample_ms:.2f} | {sample_ms / 20:.3f} | {update_ms:.1f} |")


if __name__ == "__main__":
    main()
