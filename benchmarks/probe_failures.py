"""Run the failure paths of issue 15 as a user would and print one Markdown row per probe: the
command, its exit code, the seconds until it ended, the first line of its message, and whether
it printed a traceback, wrote a non-finite checkpoint, and what run directory it left behind.

    python benchmarks/probe_failures.py            # about 3 minutes on 2 cores

Everything is written under a temporary directory that is removed at the end.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = "examples/train.py"
EVALUATE = "examples/evaluate.py"
MPE_HAQO = "tuned_configs/pettingzoo_mpe/simple_spread_v2-continuous/haqo/config.json"
SMALL = "--n_rollout_threads 2 --num_env_steps 4000"


def probes(scratch: str) -> list[tuple[str, str]]:
    """(what, command) pairs; ``{log}`` is a fresh log directory per probe."""
    killed = os.path.join(scratch, "killed")
    return [
        ("HAQO, critic_lr 1e6", f"{TRAIN} --load_config {MPE_HAQO} --n_rollout_threads 2 --num_env_steps 3000 --warmup_steps 500 --critic_lr 1e6 --log_dir {{log}}"),
        ("HAPPO, lr 1e30", f"{TRAIN} --algo happo --env pettingzoo_mpe {SMALL} --lr 1e30 --log_dir {{log}}"),
        ("HASAC, lr 1e30", f"{TRAIN} --algo hasac --env pettingzoo_mpe {SMALL} --warmup_steps 500 --lr 1e30 --log_dir {{log}}"),
        ("HAPPO, critic_lr 1e30, checkpoint every episode", f"{TRAIN} --algo happo --env pettingzoo_mpe {SMALL} --critic_lr 1e30 --checkpoint_interval 1 --log_dir {{log}}"),
        ("SIGTERM after 25 s (HASAC)", f"timeout --preserve-status -s TERM 25 {sys.executable} {TRAIN} --algo hasac --env pettingzoo_mpe --n_rollout_threads 2 --warmup_steps 500 --log_dir {killed}"),
        ("--resume the SIGTERM'd run, SIGTERM after 20 s", f"timeout --preserve-status -s TERM 20 {sys.executable} {TRAIN} --resume {{killed_run}}"),
        ("--n_rollout_threads 0", f"{TRAIN} --n_rollout_threads 0 --log_dir {{log}}"),
        ("--hidden_sizes []", f"{TRAIN} --hidden_sizes [] --log_dir {{log}}"),
        ("--hidden_sizes [0]", f"{TRAIN} --hidden_sizes [0] --log_dir {{log}}"),
        ("--episode_length 0", f"{TRAIN} --episode_length 0 --log_dir {{log}}"),
        ("--checkpoint_interval 0", f"{TRAIN} --checkpoint_interval 0 --log_dir {{log}}"),
        ("HAQO --batch_size 0", f"{TRAIN} --algo haqo --batch_size 0 --log_dir {{log}}"),
        ("HAQO --train_interval 0", f"{TRAIN} --algo haqo --train_interval 0 --log_dir {{log}}"),
        ("--seed -3", f"{TRAIN} --seed -3 --log_dir {{log}}"),
        ("--lr -0.1", f"{TRAIN} --lr -0.1 --log_dir {{log}}"),
        ("--eval_episodes 0", f"{TRAIN} --eval_episodes 0 --log_dir {{log}}"),
        ("HAQO --buffer_size 100 --batch_size 256", f"{TRAIN} --algo haqo --buffer_size 100 --batch_size 256 --log_dir {{log}}"),
        ("mamujoco --scenario Halfcheetah", f"{TRAIN} --env mamujoco --scenario Halfcheetah --log_dir {{log}}"),
        ("mamujoco --agent_conf 4x9", f"{TRAIN} --env mamujoco --agent_conf 4x9 --log_dir {{log}}"),
        ("MPE --scenario simple_tag_v2", f"{TRAIN} --scenario simple_tag_v2 --log_dir {{log}}"),
        ("evaluate.py, run with only checkpoint.pt", f"{EVALUATE} {{killed_run}} --eval_episodes 10"),
        ("evaluate.py, empty models/", f"{EVALUATE} {{empty_run}}"),
        ("unwritable --log_dir", f"{TRAIN} --log_dir /proc/harl_results"),
        ("--resume a finished run", f"{TRAIN} --resume {{finished_run}}"),
        ("--learning_rate 0.1", f"{TRAIN} --learning_rate 0.1 --log_dir {{log}}"),
        ("--actor_lr 0.1", f"{TRAIN} --actor_lr 0.1 --log_dir {{log}}"),
        ("manyagent_swimmer hasac file", f"{TRAIN} --load_config tuned_configs/mamujoco/manyagent_swimmer-10x2/hasac/config.json --log_dir {{log}}"),
    ]


def run_dirs(log: str) -> list[str]:
    return [d for d, _, files in os.walk(log) if "config.json" in files]


def checkpoint_finite(run_dir: str) -> bool | None:
    """None without a checkpoint, else whether every value in it is finite."""
    import torch

    from harl.utils.finite import non_finite_entries

    path = os.path.join(run_dir, "models", "checkpoint.pt")
    if not os.path.isfile(path):
        return None
    return not non_finite_entries(torch.load(path, weights_only=True))


def left_behind(finite: list[bool | None]) -> str:
    """What the probe left under its log directory: nothing, a failed run's logs, or a run with
    its (finite) checkpoint."""
    if not finite:
        return "none"
    return "logs, no checkpoint" if None in finite else "logs + checkpoint"


def first_line(stderr: str) -> str:
    """The line that says what happened: the error, the stop message, or the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("error", "stopped by", "note:", "Traceback")):
            return line
    return lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        finished = os.path.join(scratch, "finished")
        subprocess.run([sys.executable, TRAIN, "--algo", "happo", "--env", "toy", "--num_env_steps", "400",
                        "--n_rollout_threads", "2", "--episode_length", "20", "--log_dir", finished],
                       cwd=ROOT, capture_output=True, check=True)
        empty = os.path.join(scratch, "empty")
        os.makedirs(os.path.join(empty, "models"))
        with open(os.path.join(empty, "config.json"), "w", encoding="utf-8") as file:
            file.write("{}")
        names = {"finished_run": run_dirs(finished)[0], "empty_run": empty, "killed": os.path.join(scratch, "killed")}
        print("| probe | command | exit | seconds | first line of the message | traceback | non-finite checkpoint | run directory left |")
        print("|---|---|---|---|---|---|---|---|")
        for i, (what, template) in enumerate(probes(scratch)):
            log = os.path.join(scratch, f"log{i}")
            if "{killed_run}" in template:
                names["killed_run"] = run_dirs(names["killed"])[0] if run_dirs(names["killed"]) else "MISSING"
            command = template.format(log=log, **names)
            argv = shlex.split(command)
            if argv[0] != "timeout":
                argv = [sys.executable] + argv
            start = time.perf_counter()
            done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
            seconds = time.perf_counter() - start
            dirs = run_dirs(log) if os.path.isdir(log) else []
            finite = [checkpoint_finite(d) for d in dirs]
            shown = ("" if argv[0] == "timeout" else "python ") + command.replace(scratch, "$TMP").replace(sys.executable, "python")
            message = first_line(done.stderr).replace("|", "\\|").replace(scratch, "$TMP")
            print(f"| {what} | `{shown}` | {done.returncode} | {seconds:.1f} | {message[:220]} | "
                  f"{'yes' if 'Traceback' in done.stderr else 'no'} | {'yes' if False in finite else 'no'} | "
                  f"{left_behind(finite)} |", flush=True)


if __name__ == "__main__":
    main()
