"""Time HAQO's sampling pass and actor update at realistic sizes; prints a markdown table.

Sizes follow MPE simple_spread (3 agents, observation 18, state 54, Box(5) actions) with the
default twin critic: the behaviour pass draws ``behavior_candidates`` candidates for every agent
of every environment and picks each agent's best by ``min(Q1, Q2)``; the actor update is one
agent's :meth:`HAQO.train` on a batch of ``batch_size`` states (candidates, Adam steps, KL line
search).

    python benchmarks/bench_diffusion.py [--threads 1] [--device cpu] [--repeats 20] [--steps 8 16] [--hidden 128 256]

Table 9 of the paper (update time against the denoising steps T):
``--steps 2 4 8 16 32 --hidden 256 --batch 256`` (the MPE tuned sizes).
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
# the spec's K_b (the MPE tuned files use 1: no critic call when acting)
BEHAVIOUR_CANDIDATES = 4


def _timed_once(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def build(n_envs: int, steps: int, hidden: list[int], batch: int, device: torch.device):
    """``(behaviour pass, one agent's update)`` callables at the given sizes."""
    algo_args, _ = get_defaults_yaml_args("haqo", "pettingzoo_mpe")
    args = {
        **algo_args["model"],
        **algo_args["algo"],
        "n_timesteps": steps,
        "hidden_sizes": hidden,
        "behavior_candidates": BEHAVIOUR_CANDIDATES,
    }
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

    return behaviour, update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per configuration, interleaved")
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16], help="denoising steps T to compare")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 256], help="hidden widths (two layers each)")
    parser.add_argument("--batch", type=int, default=1000, help="states per actor update")
    cli = parser.parse_args()
    torch.set_num_threads(cli.threads)
    device = torch.device(cli.device)
    torch.manual_seed(0)
    configs = [(width, steps) for width in cli.hidden for steps in cli.steps]
    calls = {c: build(20, c[1], [c[0], c[0]], cli.batch, device) for c in configs}
    for behaviour, update in calls.values():  # warm-up
        behaviour()
        update()
    # the configurations take turns, so that machine drift touches them all alike
    times: dict[tuple[int, int], tuple[list[float], list[float]]] = {c: ([], []) for c in configs}
    for _ in range(cli.repeats):
        for c, (behaviour, update) in calls.items():
            times[c][0].append(_timed_once(behaviour, device))
            times[c][1].append(_timed_once(update, device))
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, N={N_AGENTS} agents, "
        f"K_b={BEHAVIOUR_CANDIDATES}, K=4, batch {cli.batch}, {cli.repeats} interleaved repeats, medians\n"
    )
    print(
        "| E envs | T | hidden | behaviour pass, all agents (ms) | per env step (ms) | actor update (ms) "
        "| update vs first T |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for width, steps in configs:
        sample_ms = 1000 * statistics.median(times[(width, steps)][0])
        update_ms = 1000 * statistics.median(times[(width, steps)][1])
        first_ms = 1000 * statistics.median(times[(width, cli.steps[0])][1])
        print(
            f"| 20 | {steps} | {[width, width]} | {sample_ms:.2f} | {sample_ms / 20:.3f} | {update_ms:.1f} | "
            f"{update_ms / first_ms:.2f}x |"
        )


if __name__ == "__main__":
    main()
