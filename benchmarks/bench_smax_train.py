"""Where an on-policy SMAX training iteration spends its time: the batched environment alone,
the rollout (environment + every agent's acting + buffer writes), and the learner.

Builds the runner of a tuned config (default: HAPPO on SMAX 3s5z, HARL's settings: 20
environments, 160-step rollouts, GRU policies, 5 PPO epochs), compiles and warms up, then
times, alternating, ``--repeats`` times:

* raw: the runner's own vector env stepped ``episode_length`` times with random valid actions;
* rollout: one rollout as the runner collects it (no learning);
* iteration: one rollout plus the training phase that follows it.

and prints env steps per second for each, with the rollout's and the iteration's rates as a
share of the raw rate (medians over the repeats).

    python benchmarks/bench_smax_train.py [--load_config tuned_configs/smax/3s5z/happo/config.json] \\
        [--repeats 3] [--KEY VALUE ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from harl.cli import parse_train_args
from harl.runners import RUNNER_REGISTRY
from harl.runners.off_policy_base_runner import random_actions


def main() -> None:
    """Build the runner, warm up, time the three phases in turn and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load_config", default="tuned_configs/smax/3s5z/happo/config.json")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of the three phases")
    args, overrides = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as log_dir:
        argv = ["--load_config", args.load_config, "--log_dir", log_dir, "--use_eval", "False", *overrides]
        run_args, algo_args, env_args = parse_train_args(argv)
        runner = RUNNER_REGISTRY[run_args["algo"]](run_args, algo_args, env_args)
        try:
            table = measure(runner, args.repeats)
        finally:
            runner.close()
    print(table)


def measure(runner, repeats: int) -> str:
    """Median env steps per second of the raw env, the rollout and the full iteration."""
    steps = runner.episode_length * runner.n_rollout_threads
    np.random.seed(0)
    state = {"avail": None}

    def raw() -> None:
        avail = state["avail"] or runner.envs.reset()[2]
        for _ in range(runner.episode_length):
            avail = runner.envs.step(
                random_actions(runner.envs.action_spaces, avail, runner.n_rollout_threads)
            ).available_actions
        state["avail"] = avail

    def rollout() -> None:
        runner.prep_rollout()
        for step in range(runner.episode_length):
            values, actions, log_probs, rnn_states, rnn_states_critic = runner.collect(step)
            result = runner.envs.step(actions)
            runner.train_tracker.update(result.rewards, result.infos)
            runner.insert(result, values, actions, log_probs, rnn_states, rnn_states_critic)

    def iteration() -> None:
        rollout()
        runner.compute()
        runner.prep_training()
        runner.train()
        runner.after_update()

    phases = {"raw environment": raw, "rollout (env + acting)": rollout, "iteration (rollout + learning)": iteration}
    runner.warmup()
    iteration()  # compiles the environment and warms every path up
    state["avail"] = None
    rates: dict[str, list[float]] = {name: [] for name in phases}
    for _ in range(repeats):
        for name, phase in phases.items():
            start = time.perf_counter()
            phase()
            rates[name].append(steps / (time.perf_counter() - start))
            if name == "raw environment":
                runner.warmup()  # the rollout starts from fresh episodes in its buffers
    raw_rate = statistics.median(rates["raw environment"])
    lines = [
        f"{runner.args['algo']} on {runner.args['env']} {runner.task_name}: {runner.n_rollout_threads} environments, "
        f"{runner.episode_length}-step rollouts, median of {repeats}",
        "",
        "| phase | env steps/s | share of the raw rate |",
        "| --- | --- | --- |",
    ]
    for name, values in rates.items():
        rate = statistics.median(values)
        lines.append(f"| {name} | {rate:,.0f} | {rate / raw_rate:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
