"""Control (b) of docs/results/HAQO_DISCRETE.md: can HAQO's actor, with HAQO's own update, fit a
fixed Discrete policy, and how many updates does it take?

The teacher is deterministic and depends on the observation and on the availability mask, as
a StarCraft policy does: ``argmax_{a available} (o W)_a`` for a fixed random ``W``, observations
``N(0, I)`` of size 30, 9 actions each available with probability 0.7 (action 4, SMAX's stop,
always). The critic is replaced by ``Q(a) = 1[a = teacher]``, so each update's greedy target is
the teacher's action (``enumerate_discrete``, ``chosen 1``: what HAQO does on SMAX). Every other
setting is HAQO's YAML default with the SMAX actor sizes ([64, 64, 64]), ``entropy_alpha 0.1``
as in the StarCraft files, and the diffusion actor as it was before issue 32 (``prediction
eps``, ``condition_on_available false``) unless a variant says otherwise. Reported: how often a
sampled action (behaviour) and the evaluation
action agree with the teacher on 256 held-out states, after 100 .. 2500 updates (HAQO's actor
gets about 2,500 updates per agent in 300k SMAX env steps).

    python benchmarks/distil_discrete_actor.py                 # every variant, ~30 min on one core
    python benchmarks/distil_discrete_actor.py --variants categorical x0_conditioned
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from harl.algorithms.actors.haqo import HAQO
from harl.utils.configs_tools import get_defaults_yaml_args

OBS_DIM, N_ACTIONS, BATCH = 30, 9, 256
AVAILABLE_PROBABILITY, ALWAYS_AVAILABLE = 0.7, 4
CHECKPOINTS = (100, 250, 500, 1000, 1500, 2500)

# the diffusion actor as it was before issue 32 (the YAML defaults are now auto / True); every
# variant starts from it
ACTOR_BEFORE_THE_FIXES = {"prediction": "eps", "condition_on_available": False}
# name -> overrides of HAQO's settings
VARIANTS: dict[str, dict] = {
    "categorical": {"actor": "categorical"},
    "diffusion": {},
    "diffusion_no_line_search": {"drift": "none"},
    "diffusion_action_kl": {"kl_measure": "action"},
    "diffusion_lr_1e-2_no_line_search": {"drift": "none", "lr": 1e-2},
    "diffusion_conditioned_no_line_search": {"drift": "none", "condition_on_available": True},
    "x0_no_line_search": {"drift": "none", "prediction": "x0"},
    "x0": {"prediction": "x0"},
    "x0_conditioned_no_line_search": {"drift": "none", "prediction": "x0", "condition_on_available": True},
    "x0_conditioned": {"prediction": "x0", "condition_on_available": True},
}


def teacher_batch(weights: torch.Tensor, generator: torch.Generator):
    """Observations, availability and the teacher's actions of ``BATCH`` states."""
    obs = torch.randn(BATCH, OBS_DIM, generator=generator)
    avail = (torch.rand(BATCH, N_ACTIONS, generator=generator) < AVAILABLE_PROBABILITY).float()
    avail[:, ALWAYS_AVAILABLE] = 1.0
    teacher = (obs @ weights).masked_fill(avail == 0, -torch.inf).argmax(-1)
    return obs, avail, teacher


def run(overrides: dict, updates: int, seed: int) -> list[str]:
    torch.manual_seed(seed)
    algo_args, _ = get_defaults_yaml_args("haqo", "smax")
    args = {
        **algo_args["model"],
        **algo_args["algo"],
        "hidden_sizes": [64, 64, 64],
        "enumerate_discrete": True,
        "chosen": 1,
        "entropy_alpha": 0.1,
        **ACTOR_BEFORE_THE_FIXES,
        **overrides,
    }
    obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    actor = HAQO(args, obs_space, gym.spaces.Discrete(N_ACTIONS))
    weights = torch.randn(OBS_DIM, N_ACTIONS, generator=torch.Generator().manual_seed(seed))
    train_gen, test_gen = torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(seed + 2)
    test_obs, test_avail, test_teacher = teacher_batch(weights, test_gen)
    cells = []
    for update in range(1, updates + 1):
        obs, avail, teacher = teacher_batch(weights, train_gen)
        onehot = F.one_hot(teacher, N_ACTIONS).float()
        actor.train(
            obs, [torch.zeros(BATCH, N_ACTIONS)], 0, lambda joint: (joint * onehot).sum(-1, keepdim=True), avail
        )
        if update in CHECKPOINTS:
            sampled = actor.get_actions(test_obs, test_avail, explore=True).squeeze(-1)
            evaluated = actor.get_actions(test_obs, test_avail, explore=False).squeeze(-1)
            cells.append(
                f"{(sampled == test_teacher).float().mean():.2f} / {(evaluated == test_teacher).float().mean():.2f}"
            )
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    updates = max(CHECKPOINTS)
    print("| variant | " + " | ".join(f"{c} updates" for c in CHECKPOINTS) + " | wall s |")
    print("| --- " * (len(CHECKPOINTS) + 2) + "|")
    for name in args.variants:
        start = time.perf_counter()
        cells = run(VARIANTS[name], updates, args.seed)
        print(f"| {name} | " + " | ".join(cells) + f" | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
