"""Run a sweep of :class:`RunSpec` s, each as its own ``examples/train.py`` process, on a local
pool or as Ray tasks, resumably: a finished run is skipped, a stopped one continues with
``--resume``, and one failed run never stops the others."""

from __future__ import annotations

import glob
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import asdict
from typing import IO, Any, Callable

from harl.experiments.spec import REPO_ROOT, RunSpec
from harl.utils.checkpoint import checkpoint_path
from harl.utils.errors import ConfigError
from harl.utils.files import load_json

TRAIN_PY = str(REPO_ROOT / "examples" / "train.py")


class _LocalRuns:
    """The train.py processes a local sweep is running, so that a signal to the sweep alone (a
    scheduler, `kill`) reaches them, and the signal that stopped the sweep (0: none).

    The processes stay in the sweep's process group, so that a terminal's Ctrl+C reaches them
    too; the SIGTERM passed on after it is harmless (only a second SIGINT stops a run without its
    final checkpoint), and killing the group kills them all.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # taken by the pool's threads; the handler runs in the main one
        self.processes: set[subprocess.Popen] = set()
        self.stop_signal = 0

    def start(self, command: list[str], out: IO[str]) -> subprocess.Popen | None:
        """Start ``command`` unless the sweep was stopped while this run was being set up."""
        with self.lock:
            if self.stop_signal:
                return None
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
            self.processes.add(process)
            return process

    def wait(self, process: subprocess.Popen) -> int:
        try:
            return process.wait()
        finally:
            with self.lock:
                self.processes.discard(process)

    def stop(self, signum: int, _frame: Any) -> None:
        """SIGTERM/SIGINT handler: start no further run, pass SIGTERM to the running ones (each
        saves a final checkpoint and exits) and let the sweep return."""
        if self.stop_signal:
            return
        self.stop_signal = signum
        print(
            f"[sweep] {signal.Signals(signum).name} received: the running runs save a checkpoint and stop; "
            "the same command resumes them",
            file=sys.stderr,
            flush=True,
        )
        with self.lock:
            for process in self.processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)


_LOCAL_RUNS = _LocalRuns()


def _seed_dirs(spec: RunSpec, log_dir: str) -> list[str]:
    """This run's seed directories, newest first."""
    pattern = os.path.join(spec.run_parent(log_dir), f"seed-{spec.seed:0>5}-*")
    return sorted((d for d in glob.glob(pattern) if os.path.isfile(os.path.join(d, "config.json"))), reverse=True)


def _same_run(run_dir: str, spec: RunSpec) -> bool:
    algo_args = load_json(os.path.join(run_dir, "config.json"), "run config")["algo_args"]
    return (
        int(algo_args["train"]["num_env_steps"]) == spec.num_env_steps and int(algo_args["seed"]["seed"]) == spec.seed
    )


def run_state(spec: RunSpec, log_dir: str) -> tuple[str, str | None]:
    """``("finished", dir)`` when a run of this spec wrote its final weights, ``("resume", dir)``
    when one has a checkpoint to continue from, else ``("new", None)``."""
    candidates = [d for d in _seed_dirs(spec, log_dir) if _same_run(d, spec)]
    for run_dir in candidates:
        if os.path.isfile(os.path.join(run_dir, "models", "actor_agent0.pt")):
            return "finished", run_dir
    for run_dir in candidates:
        if os.path.isfile(checkpoint_path(run_dir)):
            return "resume", run_dir
    return "new", None


def train_command(spec: RunSpec, log_dir: str, torch_threads: int, resume_dir: str | None) -> list[str]:
    """The ``examples/train.py`` command line of a run (or of its resumption)."""
    if resume_dir:
        return [sys.executable, TRAIN_PY, "--resume", resume_dir, "--torch_threads", str(torch_threads)]
    return [
        sys.executable,
        TRAIN_PY,
        "--load_config",
        spec.config,
        "--exp_name",
        spec.exp_name,
        "--seed",
        str(spec.seed),
        "--seed_specify",
        "True",
        "--num_env_steps",
        str(spec.num_env_steps),
        "--log_dir",
        log_dir,
        "--torch_threads",
        str(torch_threads),
    ]


def _refusals(runs: list[RunSpec], log_dir: str, torch_threads: int) -> dict[str, list[str]]:
    """Each message of :func:`check_runs`, with the keys of the runs it refuses."""
    from harl.cli import parse_train_args
    from harl.envs.base import EnvNotInstalledError
    from harl.runners import check_run_config

    logging.disable(logging.WARNING)  # each run prints its environment's notes when it starts
    refused: dict[str, list[str]] = {}
    for spec in runs:
        if run_state(spec, log_dir)[0] != "new":
            continue
        try:
            args, algo_args, env_args = parse_train_args(train_command(spec, log_dir, torch_threads, None)[2:])
            check_run_config(args, algo_args, env_args)
        except (ConfigError, EnvNotInstalledError) as err:
            refused.setdefault(str(err), []).append(spec.key)
    return refused


def check_runs(runs: list[RunSpec], log_dir: str, torch_threads: int) -> None:
    """Check every new run's config as ``examples/train.py`` would, before any run starts: one
    bad setting (e.g. ``--num_env_steps`` below one rollout) refuses the whole sweep with its
    message once, instead of starting every run to watch each one fail.

    The checks import the environments' packages, JAX among them (SMAX), so they run in a
    spawned process: a process that has imported JAX must not fork (Ray's local start-up does),
    and the sweep's own process stays free of it.

    Raises:
        ConfigError: the messages of the refused runs, each once, with the runs it refuses.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        refused = pool.submit(_refusals, runs, log_dir, torch_threads).result()
    if refused:
        lines = []
        for message, keys in refused.items():
            shown = "; ".join(keys[:3]) + (f"; and {len(keys) - 3} more" if len(keys) > 3 else "")
            lines.append(f"{len(keys)} of {len(runs)} runs ({shown}): {message}")
        raise ConfigError("the sweep starts no run, since these would be refused:\n" + "\n".join(lines))


def log_path(spec: RunSpec, log_dir: str, name: str) -> str:
    return os.path.join(log_dir, "sweep_logs", name, f"{spec.env}__{spec.task}__{spec.label}__seed{spec.seed}.log")


def skipped_result(run_dir: str | None) -> dict[str, Any]:
    """What :func:`execute_run` and the sweep record for a run an earlier sweep finished."""
    return {"status": "skipped", "run_dir": run_dir, "seconds": 0.0, "log": ""}


def execute_run(spec_fields: dict[str, Any], log_dir: str, torch_threads: int, name: str) -> dict[str, Any]:
    """Bring one run to its end: skip it if finished, resume it if stopped, else start it.

    Plain arguments and result, so the same function runs in a thread or as a Ray task.
    """
    spec = RunSpec(**spec_fields)
    state, run_dir = run_state(spec, log_dir)
    if state == "finished":
        return skipped_result(run_dir)
    log = log_path(spec, log_dir, name)
    os.makedirs(os.path.dirname(log), exist_ok=True)
    command = train_command(spec, log_dir, torch_threads, run_dir if state == "resume" else None)
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        process = _LOCAL_RUNS.start(command, out)
        if process is None:
            return {"status": "stopped", "run_dir": run_dir, "seconds": 0.0, "log": log}
        returncode = _LOCAL_RUNS.wait(process)
    state, run_dir = run_state(spec, log_dir)
    finished = returncode == 0 and state == "finished"
    status = "done" if finished else "stopped" if _LOCAL_RUNS.stop_signal else "failed"
    return {
        "status": status,
        "returncode": returncode,
        "run_dir": run_dir,
        "seconds": time.perf_counter() - start,
        "log": log,
        "resumed": state == "resume",
    }


class SweepProgress:
    """One line per event: runs done, running, failed and the ETA of the sweep."""

    def __init__(self, name: str, total: int, workers: int, stream=None) -> None:
        self.name, self.total, self.workers, self.stream = name, total, workers, stream
        self.done = self.skipped = self.failed = self.running = 0
        self.durations: list[float] = []
        self.start = time.monotonic()

    def event(self, message: str) -> None:
        remaining = self.total - self.done - self.skipped - self.failed
        eta = ""
        if self.durations and remaining:
            seconds = sum(self.durations) / len(self.durations) * remaining / max(1, min(self.workers, remaining))
            eta = f", ETA {int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
        print(
            f"[sweep {self.name}] {self.done + self.skipped}/{self.total} finished ({self.skipped} earlier), "
            f"{self.running} running, {self.failed} failed{eta} | {message}",
            file=self.stream or sys.stderr,
            flush=True,
        )


def run_sweep(
    name: str,
    runs: list[RunSpec],
    log_dir: str,
    workers: int,
    torch_threads: int,
    ray_address: str | None = None,
    use_gpu: bool = False,
) -> list[dict[str, Any]]:
    """Execute every run (see :func:`execute_run`) and return their results in ``runs`` order."""
    progress = SweepProgress(name, len(runs), workers)
    results: list[dict[str, Any] | None] = [None] * len(runs)

    def record(index: int, result: dict[str, Any]) -> None:
        results[index] = result
        spec = runs[index]
        if result["status"] == "skipped":
            progress.skipped += 1
            return progress.event(f"already finished: {spec.key}")
        progress.running -= 1
        if result["status"] == "done":
            progress.done += 1
            progress.durations.append(result["seconds"])
            progress.event(f"done in {result['seconds']:.0f} s: {spec.key}")
        elif result["status"] == "stopped":
            saved = "with a checkpoint" if result.get("resumed") else "before its first checkpoint"
            progress.event(f"stopped {saved}: {spec.key}")
        else:
            progress.failed += 1
            progress.event(f"FAILED (exit {result.get('returncode')}): {spec.key}; log: {result['log']}")

    # runs finished by an earlier sweep are counted before anything starts, so that the first
    # line's count and the ETA are the sweep's, not a partial view
    to_run = []
    for index, spec in enumerate(runs):
        if run_state(spec, log_dir)[0] == "finished":
            record(index, skipped_result(None))
        else:
            to_run.append(index)

    if to_run and ray_address is not None:
        _run_on_ray(runs, to_run, log_dir, torch_threads, name, ray_address, use_gpu, progress, record)
    elif to_run:
        _LOCAL_RUNS.stop_signal = 0
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {sig: signal.signal(sig, _LOCAL_RUNS.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            _run_locally(runs, to_run, log_dir, workers, torch_threads, name, progress, record)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    return [r for r in results if r is not None]


def stopped_by_signal() -> int:
    """The signal (SIGTERM or SIGINT) that stopped the last local :func:`run_sweep`, else 0."""
    return _LOCAL_RUNS.stop_signal


def _run_locally(
    runs: list[RunSpec],
    to_run: list[int],
    log_dir: str,
    workers: int,
    torch_threads: int,
    name: str,
    progress: SweepProgress,
    record: Callable[[int, dict[str, Any]], None],
) -> None:
    """``runs[i]`` for ``i`` in ``to_run``, ``workers`` at a time in threads, each an
    ``examples/train.py`` process; after a stop signal no further run starts."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: dict[Future, int] = {}
        queue = list(to_run)

        def submit_next() -> None:
            index = queue.pop(0)
            state, _ = run_state(runs[index], log_dir)
            if state == "finished":
                record(index, skipped_result(None))
                return
            progress.running += 1
            progress.event(f"{'resuming' if state == 'resume' else 'starting'}: {runs[index].key}")
            pending[pool.submit(execute_run, asdict(runs[index]), log_dir, torch_threads, name)] = index

        while (queue and not _LOCAL_RUNS.stop_signal) or pending:
            while queue and len(pending) < workers and not _LOCAL_RUNS.stop_signal:
                submit_next()
            if pending:
                finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in finished:
                    record(pending.pop(future), future.result())


def _run_on_ray(
    runs: list[RunSpec],
    indices: list[int],
    log_dir: str,
    torch_threads: int,
    name: str,
    address: str,
    use_gpu: bool,
    progress: SweepProgress,
    record: Callable[[int, dict[str, Any]], None],
) -> None:
    """``runs[i]`` for ``i`` in ``indices``, each as a Ray task asking for its CPUs (and a GPU
    when the configs use CUDA)."""
    try:
        import ray
    except ImportError:
        raise ConfigError('--ray needs Ray: pip install -e ".[ray]"') from None
    if not ray.is_initialized():
        try:  # "auto": the cluster this machine belongs to, if any
            ray.init(address=address, log_to_driver=False)
        except ConnectionError:
            if address != "auto":
                raise ConfigError(f"--ray {address}: no Ray cluster answers there") from None
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=torch_threads, num_gpus=1 if use_gpu else 0)(execute_run)
    pending = {}
    for index in indices:
        pending[remote.remote(asdict(runs[index]), os.path.abspath(log_dir), torch_threads, name)] = index
        progress.running += 1
    progress.event(f"{len(indices)} runs submitted to Ray at {address}")
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            result = ray.get(ref)
            if result["status"] == "skipped":
                progress.running -= 1
            record(pending.pop(ref), result)
