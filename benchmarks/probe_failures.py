"""Run the failure paths of issues 15 and 31 as a user would and print one Markdown row per
probe: the command, its exit code, the seconds until it ended, the first line of its message,
how many lines it printed on stdout, and whether it printed a traceback, wrote a non-finite
checkpoint, and what run directory it left behind.

    python benchmarks/probe_failures.py                  # about 6 minutes on 2 cores
    python benchmarks/probe_failures.py --only resume    # the probes whose name has "resume"
    python benchmarks/probe_failures.py --list           # the probes' names

Issue 31's probes give every example script every kind of bad file argument (missing,
unreadable, a directory where a file is expected and the reverse, malformed, empty) and press
Ctrl+C in each while torch is still loading. Run as root, a mode-000 file is still readable, so
the "unreadable" probes then run under ``setpriv`` without CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH, the capabilities that let root read it (skipped without ``setpriv``).
Everything is written under a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = "examples/train.py"
EVALUATE = "examples/evaluate.py"
REPRODUCE = "examples/reproduce.py"
SUMMARIZE = "examples/summarize.py"
DENSITY = "examples/plot_density.py"
# root reads mode-000 files; without these two capabilities it is refused like any user
AS_USER = "setpriv --bounding-set=-dac_override,-dac_read_search {python}"
CTRL_C = "ctrl-c:"  # a probe that presses Ctrl+C while torch loads
MPE_HAQO = "tuned_configs/pettingzoo_mpe/simple_spread_v2-continuous/haqo/config.json"
SMALL = "--n_rollout_threads 2 --num_env_steps 4000"


def probes(scratch: str) -> list[tuple[str, str]]:
    """(what, command) pairs; ``{log}`` is a fresh log directory per probe."""
    killed = os.path.join(scratch, "killed")
    return [
        (
            "HAQO, critic_lr 1e6",
            f"{TRAIN} --load_config {MPE_HAQO} --n_rollout_threads 2 --num_env_steps 3000 --warmup_steps 500 "
            "--critic_lr 1e6 --log_dir {log}",
        ),
        ("HAPPO, lr 1e30", f"{TRAIN} --algo happo --env pettingzoo_mpe {SMALL} --lr 1e30 --log_dir {{log}}"),
        (
            "HASAC, lr 1e30",
            f"{TRAIN} --algo hasac --env pettingzoo_mpe {SMALL} --warmup_steps 500 --lr 1e30 --log_dir {{log}}",
        ),
        (
            "HAPPO, critic_lr 1e30, checkpoint every episode",
            f"{TRAIN} --algo happo --env pettingzoo_mpe {SMALL} --critic_lr 1e30 --checkpoint_interval 1 "
            "--log_dir {log}",
        ),
        (
            "SIGTERM after 25 s (HASAC)",
            f"timeout --preserve-status -s TERM 25 {sys.executable} {TRAIN} --algo hasac --env pettingzoo_mpe "
            f"--n_rollout_threads 2 --warmup_steps 500 --log_dir {killed}",
        ),
        (
            "--resume the SIGTERM'd run, SIGTERM after 20 s",
            f"timeout --preserve-status -s TERM 20 {sys.executable} {TRAIN} --resume {{killed_run}}",
        ),
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
        (
            "HAQO --buffer_size 100 --batch_size 256",
            f"{TRAIN} --algo haqo --buffer_size 100 --batch_size 256 --log_dir {{log}}",
        ),
        ("mamujoco --scenario Halfcheetah", f"{TRAIN} --env mamujoco --scenario Halfcheetah --log_dir {{log}}"),
        ("mamujoco --agent_conf 4x9", f"{TRAIN} --env mamujoco --agent_conf 4x9 --log_dir {{log}}"),
        ("MPE --scenario simple_tag_v2", f"{TRAIN} --scenario simple_tag_v2 --log_dir {{log}}"),
        ("evaluate.py, run with only checkpoint.pt", f"{EVALUATE} {{killed_run}} --eval_episodes 10"),
        ("evaluate.py, empty models/", f"{EVALUATE} {{empty_run}}"),
        ("unwritable --log_dir", f"{TRAIN} --log_dir /proc/harl_results"),
        ("--resume a finished run", f"{TRAIN} --resume {{finished_run}}"),
        ("--learning_rate 0.1", f"{TRAIN} --learning_rate 0.1 --log_dir {{log}}"),
        ("--actor_lr 0.1", f"{TRAIN} --actor_lr 0.1 --log_dir {{log}}"),
        (
            "manyagent_swimmer hasac file",
            f"{TRAIN} --load_config tuned_configs/mamujoco/manyagent_swimmer-10x2/hasac/config.json --log_dir {{log}}",
        ),
        *file_probes(),
    ]


def file_probes() -> list[tuple[str, str]]:
    """Issue 31: every example script, every file argument, every way of being wrong; then
    Ctrl+C in each script while torch loads. ``{f}`` is the folder of the bad files."""
    return [
        ("train.py --load_config missing", f"{TRAIN} --load_config {{f}}/missing.json --log_dir {{log}}"),
        (
            "train.py --load_config unreadable (mode 000)",
            f"{AS_USER} {TRAIN} --load_config {{f}}/locked.json --log_dir {{log}}",
        ),
        ("train.py --load_config a directory", f"{TRAIN} --load_config {{f}}/folder --log_dir {{log}}"),
        ("train.py --load_config malformed JSON", f"{TRAIN} --load_config {{f}}/bad.json --log_dir {{log}}"),
        ("train.py --load_config empty", f"{TRAIN} --load_config {{f}}/empty.json --log_dir {{log}}"),
        (
            "train.py --load_config a binary file",
            f"{TRAIN} --load_config {{finished_run}}/models/checkpoint.pt --log_dir {{log}}",
        ),
        ("train.py --resume missing", f"{TRAIN} --resume {{f}}/missing_run"),
        ("train.py --resume a file", f"{TRAIN} --resume {{f}}/bad.yaml"),
        ("train.py --resume, config.json malformed", f"{TRAIN} --resume {{f}}/run_bad_config"),
        ("train.py --resume, config.json empty", f"{TRAIN} --resume {{f}}/run_empty_config"),
        ("train.py --resume, config.json unreadable", f"{AS_USER} {TRAIN} --resume {{f}}/run_locked_config"),
        ("train.py --log_dir a file", f"{TRAIN} --log_dir {{f}}/bad.json"),
        ("train.py --model_dir missing", f"{TRAIN} --model_dir {{f}}/missing_models --log_dir {{log}}"),
        (
            "train.py --model_dir, a weights file damaged",
            f"{TRAIN} --model_dir {{f}}/run_damaged_weights/models --log_dir {{log}}",
        ),
        ("reproduce.py, experiment file missing", f"{REPRODUCE} {{f}}/missing.yaml --dry_run --log_dir {{log}}"),
        (
            "reproduce.py, experiment file unreadable",
            f"{AS_USER} {REPRODUCE} {{f}}/locked.yaml --dry_run --log_dir {{log}}",
        ),
        ("reproduce.py, experiment file a directory", f"{REPRODUCE} {{f}}/folder --dry_run --log_dir {{log}}"),
        ("reproduce.py, experiment file malformed", f"{REPRODUCE} {{f}}/bad.yaml --dry_run --log_dir {{log}}"),
        ("reproduce.py, experiment file empty", f"{REPRODUCE} {{f}}/empty.yaml --dry_run --log_dir {{log}}"),
        ("reproduce.py, tuned config malformed", f"{REPRODUCE} {{f}}/bad_tuned/exp.yaml --dry_run --log_dir {{log}}"),
        ("reproduce.py --log_dir a file", f"{REPRODUCE} {{f}}/exp.yaml --log_dir {{f}}/bad.json"),
        (
            "reproduce.py --report --out a file",
            f"{REPRODUCE} {{f}}/exp.yaml --report --log_dir {{log}} --out {{f}}/bad.json",
        ),
        (
            "reproduce.py, a run's config.json malformed",
            f"{REPRODUCE} {{f}}/exp.yaml --dry_run --log_dir {{f}}/sweep_bad_run",
        ),
        ("evaluate.py, run directory missing", f"{EVALUATE} {{f}}/MISSING_DIR"),
        ("evaluate.py, a file as run directory", f"{EVALUATE} {{f}}/bad.json"),
        ("evaluate.py, config.json malformed", f"{EVALUATE} {{f}}/run_bad_config"),
        ("evaluate.py, config.json empty", f"{EVALUATE} {{f}}/run_empty_config"),
        ("evaluate.py, config.json unreadable", f"{AS_USER} {EVALUATE} {{f}}/run_locked_config"),
        ("evaluate.py, config.json a directory", f"{EVALUATE} {{f}}/run_folder_config"),
        ("evaluate.py, a weights file damaged", f"{EVALUATE} {{f}}/run_damaged_weights --eval_episodes 2"),
        ("evaluate.py, checkpoint.pt damaged", f"{EVALUATE} {{f}}/run_damaged_checkpoint --eval_episodes 2"),
        ("summarize.py, results folder missing", f"{SUMMARIZE} {{f}}/missing_results"),
        ("summarize.py, results folder a file", f"{SUMMARIZE} {{f}}/bad.json"),
        ("summarize.py, progress.csv damaged", f"{SUMMARIZE} {{f}}/results_bad_progress"),
        ("summarize.py, progress.csv unreadable", f"{AS_USER} {SUMMARIZE} {{f}}/results_locked_progress"),
        ("summarize.py --plot_dir a file", f"{SUMMARIZE} {{f}}/results --plot_dir {{f}}/bad.json"),
        ("plot_density.py, group missing", f"{DENSITY} {{f}}/missing_group --out {{log}}/d.png"),
        ("plot_density.py, config.json malformed", f"{DENSITY} {{f}}/run_bad_config --out {{log}}/d.png"),
        ("plot_density.py --out a directory", f"{DENSITY} {{finished_run}} --out {{f}}/folder.png"),
        ("Ctrl+C while train.py loads torch", f"{CTRL_C} {TRAIN} --algo happo --env toy --log_dir {{log}}"),
        ("Ctrl+C while reproduce.py loads torch", f"{CTRL_C} {REPRODUCE} {{f}}/exp.yaml --workers 1 --log_dir {{log}}"),
        ("Ctrl+C while evaluate.py loads torch", f"{CTRL_C} {EVALUATE} {{finished_run}}"),
        ("Ctrl+C while summarize.py loads torch", f"{CTRL_C} {SUMMARIZE} {{f}}/results"),
        ("Ctrl+C while plot_density.py loads torch", f"{CTRL_C} {DENSITY} {{finished_run}} --out {{log}}/d.png"),
    ]


def bad_files(folder: str, finished_run: str) -> None:
    """The files of :func:`file_probes`, under ``folder``."""

    def write(name: str, content: str | bytes, mode: int | None = None) -> str:
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(content.encode() if isinstance(content, str) else content)
        if mode is not None:
            os.chmod(path, mode)
        return path

    def run_copy(name: str) -> str:
        return shutil.copytree(finished_run, os.path.join(folder, name))

    os.makedirs(os.path.join(folder, "folder"))
    os.makedirs(os.path.join(folder, "folder.png"))
    with open(os.path.join(finished_run, "config.json"), encoding="utf-8") as file:
        config = file.read()
    write("bad.json", '{"main_args": {"algo": "happo",\n  "env": }\n}\n')
    write("empty.json", "")
    write("locked.json", config, 0)
    write("bad.yaml", "tasks: [\n")  # the example
    write("empty.yaml", "")
    tuned = json.dumps({"main_args": {"algo": "happo", "env": "toy"}, "algo_args": {"train": {"num_env_steps": 400}}})
    experiment = (
        "name: t\ntitle: T\nmetric: return\nseeds: [1]\nalgorithms: [happo]\ntuned_dir: tuned\n"
        "tasks:\n  - {env: toy, task: toy-discrete}\n"
    )
    write("tuned/toy/toy-discrete/happo/config.json", tuned)
    write("exp.yaml", experiment)
    write("locked.yaml", experiment, 0)
    write("bad_tuned/tuned/toy/toy-discrete/happo/config.json", tuned[:-1])
    write("bad_tuned/exp.yaml", experiment)
    write(
        "sweep_bad_run/toy/toy-discrete/happo/t_400/seed-00001-2026-01-01-00-00-00/config.json",
        config[: len(config) // 2],
    )
    write(os.path.join(run_copy("run_bad_config"), "config.json"), config[: len(config) // 2])
    write(os.path.join(run_copy("run_empty_config"), "config.json"), "")
    write(os.path.join(run_copy("run_locked_config"), "config.json"), config, 0)
    folder_config = os.path.join(run_copy("run_folder_config"), "config.json")
    os.remove(folder_config)
    os.makedirs(folder_config)
    write(os.path.join(run_copy("run_damaged_weights"), "models", "actor_agent0.pt"), b"PK\x03\x04 truncated")
    damaged = run_copy("run_damaged_checkpoint")
    for name in os.listdir(os.path.join(damaged, "models")):
        if name != "checkpoint.pt":
            os.remove(os.path.join(damaged, "models", name))
    with open(os.path.join(damaged, "models", "checkpoint.pt"), "r+b") as file:
        file.truncate(os.path.getsize(file.name) // 2)
    shutil.copytree(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(finished_run)))),
        os.path.join(folder, "results", "toy"),
    )
    for name, mode in (("results_bad_progress", None), ("results_locked_progress", 0)):
        copy = shutil.copytree(os.path.join(folder, "results"), os.path.join(folder, name))
        progress = next(os.path.join(d, "progress.csv") for d, _, files in os.walk(copy) if "progress.csv" in files)
        if mode is None:  # a row whose numbers are text, as a damaged or hand-edited file can have
            with open(progress, encoding="utf-8") as file:
                columns = file.readline().count(",") + 1
            with open(progress, "a", encoding="utf-8") as file:
                file.write(",".join(["999"] + ["not a number"] * (columns - 1)) + "\n")
        else:
            os.chmod(progress, mode)


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
        if line.startswith(("error", "stopped by", "note:", "Traceback", "interrupted")):
            return line
    return lines[-1] if lines else ""


def ctrl_c_while_torch_loads(argv: list[str]) -> subprocess.CompletedProcess:
    """Run ``argv``, and once torch's library is mapped into it (torch is importing) send SIGINT
    to its process group, as a terminal's Ctrl+C does."""
    process = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.time() + 120
    while process.poll() is None and time.time() < deadline:
        try:
            with open(f"/proc/{process.pid}/maps", encoding="ascii", errors="replace") as file:
                if "libtorch_cpu" in file.read():
                    break
        except OSError:
            pass
        time.sleep(0.005)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def setpriv_works() -> bool:
    """Whether a mode-000 file is refused to a command run under :data:`AS_USER` (always true
    for a user other than root)."""
    if os.geteuid() != 0:
        return True
    with tempfile.NamedTemporaryFile() as probe:
        os.chmod(probe.name, 0)
        try:
            done = subprocess.run(shlex.split(AS_USER.format(python="cat")) + [probe.name], capture_output=True)
        except OSError:
            return False
        return done.returncode != 0 and b"Permission denied" in done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only the probes whose name contains TEXT (case-insensitive; repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="print the probes' names and exit")
    cli = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        chosen = [
            (i, what, template)
            for i, (what, template) in enumerate(probes(scratch))
            if not cli.only or any(text.lower() in what.lower() for text in cli.only)
        ]
        if cli.list or not chosen:
            print("\n".join(what for _, what, _ in chosen) or f"no probe matches {cli.only}")
            return
        finished = os.path.join(scratch, "finished")
        subprocess.run(
            [
                sys.executable,
                TRAIN,
                "--algo",
                "happo",
                "--env",
                "toy",
                "--num_env_steps",
                "400",
                "--n_rollout_threads",
                "2",
                "--episode_length",
                "20",
                "--log_dir",
                finished,
            ],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        empty = os.path.join(scratch, "empty")
        os.makedirs(os.path.join(empty, "models"))
        with open(os.path.join(empty, "config.json"), "w", encoding="utf-8") as file:
            file.write("{}")
        names = {
            "finished_run": run_dirs(finished)[0],
            "empty_run": empty,
            "killed": os.path.join(scratch, "killed"),
            "f": os.path.join(scratch, "files"),
            "python": sys.executable,
        }
        bad_files(names["f"], names["finished_run"])
        as_user = setpriv_works()
        print(
            "| probe | command | exit | seconds | first line of the message | lines on stdout | traceback | "
            "non-finite checkpoint | run directory left |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for i, what, template in chosen:
            log = os.path.join(scratch, f"log{i}")
            if "{killed_run}" in template:
                names["killed_run"] = run_dirs(names["killed"])[0] if run_dirs(names["killed"]) else "MISSING"
            ctrl_c = template.startswith(CTRL_C)
            command = template.removeprefix(CTRL_C).strip().format(log=log, **names)
            argv = shlex.split(command)
            if argv[0] not in ("timeout", "setpriv"):
                argv = [sys.executable] + argv
            shown = ("python " if argv[0] == sys.executable else "") + command
            shown = shown.replace(scratch, "$TMP").replace(sys.executable, "python")
            if argv[0] == "setpriv" and not as_user:
                print(
                    f"| {what} | `{shown}` | - | - | skipped: running as root, which reads mode-000 files, "
                    "and setpriv cannot drop that | - | - | - | - |",
                    flush=True,
                )
                continue
            start = time.perf_counter()
            if ctrl_c:
                done = ctrl_c_while_torch_loads(argv)
                shown += " (Ctrl+C once torch starts loading)"
            else:
                done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
            seconds = time.perf_counter() - start
            dirs = run_dirs(log) if os.path.isdir(log) else []
            finite = [checkpoint_finite(d) for d in dirs]
            message = first_line(done.stderr).replace("|", "\\|").replace(scratch, "$TMP")
            print(
                f"| {what} | `{shown}` | {done.returncode} | {seconds:.1f} | {message[:220]} | "
                f"{len(done.stdout.splitlines())} | {'yes' if 'Traceback' in done.stderr else 'no'} | "
                f"{'yes' if False in finite else 'no'} | {left_behind(finite)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
