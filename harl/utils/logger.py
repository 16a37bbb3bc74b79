"""Run logging: TensorBoard, ``progress.csv``, a progress display, and episode-return tracking.

``progress.csv`` columns: ``env_steps, wall_time, fps, train_episode_return,
eval_episode_return``, then ``train_<metric>`` and ``eval_<metric>`` for the environment's
``episode_metric_names``. A cell is blank when that quantity was not measured in that row.
Algorithm diagnostics (losses, KL, ...) go to TensorBoard only, through :meth:`log_scalars`.
"""
from __future__ import annotations

import csv
import glob
import io
import math
import os
import sys
import time
from typing import IO, Callable, Mapping, NamedTuple, Sequence

import numpy as np
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from harl.utils.checkpoint import atomic_write

BASE_COLUMNS = ("env_steps", "wall_time", "fps", "train_episode_return", "eval_episode_return")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


class _TqdmProgress:
    """Interactive bar, for terminals."""

    def __init__(self, total: int, initial: int, stream: IO[str]) -> None:
        self._bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            file=stream,
        )

    def update(
        self, step: int, fps: float, train: float | None, evaluation: float | None, rate: tuple[str, float] | None = None
    ) -> None:
        shown = "" if rate is None else f" {rate[0].split()[0]}={rate[1]:.2f}"
        self._bar.set_postfix_str(
            f"fps={fps:,.0f} train={_fmt(train)} eval={_fmt(evaluation)}{shown}", refresh=False
        )
        self._bar.update(step - self._bar.n)

    def close(self) -> None:
        self._bar.close()


class _PlainProgress:
    """One full line every ``interval_s`` seconds, for logs and CI.

    tqdm keeps redrawing one line with carriage returns; written to a file or a CI log that
    becomes one endless line (or thousands of partial ones), so non-terminals get plain lines.
    """

    def __init__(self, total: int, stream: IO[str], interval_s: float) -> None:
        self._total = total
        self._stream = stream
        self._interval_s = interval_s
        self._last_print = -math.inf
        self._last_line = ""
        self._emitted = ""

    def update(
        self, step: int, fps: float, train: float | None, evaluation: float | None, rate: tuple[str, float] | None = None
    ) -> None:
        eta = (self._total - step) / fps if fps > 0 else math.inf
        eta_text = tqdm.format_interval(eta) if math.isfinite(eta) else "?"
        percent = 100.0 * step / self._total if self._total else 100.0
        self._last_line = (
            f"[harl] {step:,}/{self._total:,} steps ({percent:.1f}%) | {fps:,.0f} fps | "
            f"ETA {eta_text} | train return {_fmt(train)} | eval return {_fmt(evaluation)}"
            + ("" if rate is None else f" | eval {rate[0]} {rate[1]:.2f}")
        )
        now = time.monotonic()
        if now - self._last_print >= self._interval_s:
            self._emit()
            self._last_print = now

    def _emit(self) -> None:
        print(self._last_line, file=self._stream, flush=True)
        self._emitted = self._last_line

    def close(self) -> None:
        if self._last_line != self._emitted:
            self._emit()


class CompletedEpisodes(NamedTuple):
    """Episodes that finished at one vector step."""

    returns: np.ndarray  # (K,) float64
    metrics: dict[str, np.ndarray]  # metric name -> values of the episodes that reported it


class EpisodeTracker:
    """Accumulates per-environment episode returns over a vectorised environment.

    The return of an episode is the sum over its steps of the reward averaged over agents
    (HARL's convention; for shared-reward tasks it is the sum of the shared reward). Episode ends
    and ``episode_metrics`` are read from ``StepResult.infos``.
    """

    def __init__(self, n_envs: int) -> None:
        self.n_envs = n_envs
        self._running = np.zeros(n_envs, dtype=np.float64)

    def update(self, rewards: np.ndarray, infos: Sequence[dict]) -> CompletedEpisodes:
        """Add one vector step and return the episodes that finished at it.

        Args:
            rewards: ``(E, N)`` or ``(E, N, 1)`` rewards.
            infos: per-environment info dicts; ``episode_done`` marks an auto-reset and
                ``episode_metrics`` (if present) is reported for that episode.
        """
        self._running += np.asarray(rewards, dtype=np.float64).reshape(self.n_envs, -1).mean(axis=1)
        # Reading one flag per env is the only per-env Python work; the sums are vectorised.
        done = np.fromiter((info["episode_done"] for info in infos), dtype=bool, count=self.n_envs)
        finished = np.flatnonzero(done)
        returns = self._running[finished]  # fancy indexing copies, so the reset below is safe
        self._running[finished] = 0.0
        metrics: dict[str, list[float]] = {}
        for env in finished:
            for name, value in (infos[env].get("episode_metrics") or {}).items():
                metrics.setdefault(name, []).append(float(value))
        return CompletedEpisodes(
            returns, {name: np.asarray(values) for name, values in metrics.items()}
        )

    def reset(self) -> None:
        """Drop the partial returns (call after resetting the environments)."""
        self._running[:] = 0.0


def _truncate_events(logs_dir: str, start_step: int) -> None:
    """Drop the TensorBoard points after ``start_step`` from the event files of a resumed run,
    so that every reader sees one value per step (start_step itself was logged before the
    checkpoint and is kept, like its CSV row)."""
    for path in sorted(glob.glob(os.path.join(logs_dir, "events.out.tfevents.*"))):
        events = list(RawEventFileLoader(path).Load())
        kept = [raw for raw in events if event_pb2.Event.FromString(raw).step <= start_step]
        if len(kept) == len(events):
            continue

        def write(file: IO[bytes], records: list[bytes] = kept) -> None:
            writer = RecordWriter(file)
            for raw in records:
                writer.write(raw)

        atomic_write(path, write)


class RunLogger:
    """TensorBoard + ``progress.csv`` + progress display for one run directory.

    Training episodes are handed over as they finish (:meth:`add_train_episodes`); each
    :meth:`log_row` writes their mean return and metrics and starts a new window.

    Args:
        run_dir: the run directory (TensorBoard files go to ``run_dir/logs``).
        metric_names: the environment's ``episode_metric_names``.
        diagnostic_names: algorithm diagnostics that also get a ``progress.csv`` column (after
            the metrics), e.g. HAQO's per-agent KL; other diagnostics go to TensorBoard only.
        total_steps: ``num_env_steps``, the end of the progress display.
        start_step: env steps already done (the checkpoint's counter when resuming). Rows of
            ``progress.csv`` and TensorBoard points after it are dropped, since they will be
            replayed.
        start_wall: wall-clock seconds spent by earlier segments of the run.
        disable_progress: no progress display at all.
        stream: where the progress display goes (default ``sys.stderr``).
        plain_interval_s: seconds between progress lines when ``stream`` is not a terminal.
    """

    def __init__(
        self,
        run_dir: str,
        metric_names: tuple[str, ...],
        total_steps: int,
        start_step: int = 0,
        start_wall: float = 0.0,
        disable_progress: bool = False,
        stream: IO[str] | None = None,
        plain_interval_s: float = 30.0,
        diagnostic_names: tuple[str, ...] = (),
    ) -> None:
        self.metric_names = tuple(metric_names)
        self.diagnostic_names = tuple(diagnostic_names)
        self.columns = (
            BASE_COLUMNS
            + tuple(f"train_{m}" for m in self.metric_names)
            + tuple(f"eval_{m}" for m in self.metric_names)
            + self.diagnostic_names
        )
        self.csv_path = os.path.join(run_dir, "progress.csv")
        if os.path.exists(self.csv_path):
            self._truncate_csv(start_step)
            self._csv_file = open(self.csv_path, "a", newline="", encoding="utf-8")
            self._csv = csv.DictWriter(self._csv_file, fieldnames=self.columns)
        else:
            self._csv_file = open(self.csv_path, "w", newline="", encoding="utf-8")
            self._csv = csv.DictWriter(self._csv_file, fieldnames=self.columns)
            self._csv.writeheader()
            self._csv_file.flush()
        logs_dir = os.path.join(run_dir, "logs")
        if start_step > 0:
            _truncate_events(logs_dir, start_step)
        self.writer = SummaryWriter(log_dir=logs_dir)
        self._start_step = start_step
        self._start_wall = start_wall
        self._t0 = time.monotonic()
        self._row_clock = (self._t0, start_step)
        self._window_returns: list[np.ndarray] = []
        self._window_metrics: dict[str, list[np.ndarray]] = {}
        self._last_train: float | None = None
        self._last_eval: float | None = None
        # (name, value) of the last evaluation's rate, for environments with a win or score rate
        self._last_rate: tuple[str, float] | None = None
        stream = stream if stream is not None else sys.stderr
        self._progress: _TqdmProgress | _PlainProgress | None = None
        if not disable_progress:
            if hasattr(stream, "isatty") and stream.isatty():
                self._progress = _TqdmProgress(total_steps, start_step, stream)
            else:
                self._progress = _PlainProgress(total_steps, stream, plain_interval_s)
        self._closed = False

    def _truncate_csv(self, start_step: int) -> None:
        """Keep the header and the rows with ``env_steps <= start_step``."""
        with open(self.csv_path, newline="", encoding="utf-8") as file:
            rows = [
                row
                for row in csv.DictReader(file)
                if row.get("env_steps") and float(row["env_steps"]) <= start_step
            ]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        # Atomic, so a crash while resuming cannot lose the rows already logged.
        atomic_write(self.csv_path, lambda file: file.write(text.getvalue().encode("utf-8")))

    def wall_time(self) -> float:
        """Seconds of wall-clock time of the whole run, earlier resumed segments included."""
        return self._start_wall + time.monotonic() - self._t0

    def add_train_episodes(self, episodes: CompletedEpisodes) -> None:
        """Collect finished training episodes (from :meth:`EpisodeTracker.update`) for the next
        row."""
        if episodes.returns.size:
            self._window_returns.append(episodes.returns)
        for name, values in episodes.metrics.items():
            self._window_metrics.setdefault(name, []).append(values)

    def advance(self, env_steps: int) -> None:
        """Move the progress display to ``env_steps`` (call after every rollout)."""
        if self._progress is not None:
            elapsed = time.monotonic() - self._t0
            fps = (env_steps - self._start_step) / elapsed if elapsed > 0 else 0.0
            self._progress.update(env_steps, fps, self._last_train, self._last_eval, self._last_rate)

    def log_row(
        self,
        env_steps: int,
        wall_time: float | None = None,
        row: Mapping[str, float] | None = None,
    ) -> None:
        """Append one ``progress.csv`` row (flushed at once) and mirror it to TensorBoard.

        Args:
            env_steps: total environment steps so far.
            wall_time: run time in seconds; default :meth:`wall_time`.
            row: values of other columns, e.g. ``{"eval_episode_return": ...,
                "eval_won": ...}``. ``fps`` defaults to the rate since the previous row;
                ``train_episode_return`` and ``train_<metric>`` default to the means of the
                episodes added since the previous row. Anything else left out is blank.

        Raises:
            ValueError: a key of ``row``, or a metric of the added episodes, that is not a
                column of this logger.
        """
        values = dict(row or {})
        now = time.monotonic()
        clock, steps = self._row_clock
        values.setdefault("fps", (env_steps - steps) / max(now - clock, 1e-9))
        self._row_clock = (now, env_steps)
        if self._window_returns:
            mean_return = float(np.concatenate(self._window_returns).mean())
            values.setdefault("train_episode_return", mean_return)
        for name, chunks in self._window_metrics.items():
            values.setdefault(f"train_{name}", float(np.concatenate(chunks).mean()))
        self._window_returns, self._window_metrics = [], {}
        unknown = sorted(set(values) - set(self.columns[2:]))
        if unknown:
            raise ValueError(
                f"{unknown} are not progress.csv columns {self.columns[2:]}; episode metrics "
                "must be among the metric_names given to RunLogger (the env's "
                "episode_metric_names)."
            )

        wall = self.wall_time() if wall_time is None else wall_time
        self._csv.writerow({"env_steps": env_steps, "wall_time": round(wall, 3), **values})
        self._csv_file.flush()
        self.log_scalars(
            {self._tag(column): value for column, value in values.items()}, env_steps
        )
        self._last_train = values.get("train_episode_return", self._last_train)
        self._last_eval = values.get("eval_episode_return", self._last_eval)
        for column, name in (("eval_win_rate", "win rate"), ("eval_score_rate", "score rate")):
            if values.get(column) is not None:
                self._last_rate = (name, values[column])
        self.advance(env_steps)

    def _tag(self, column: str) -> str:
        """TensorBoard tag of a CSV column: ``train_episode_return`` -> ``train/episode_return``."""
        if column in self.diagnostic_names:
            return f"diagnostics/{column}"
        prefix, _, name = column.partition("_")
        return f"{prefix}/{name}" if prefix in ("train", "eval") else f"time/{column}"

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        """TensorBoard-only scalars, tagged like ``agent0/policy_loss`` or ``critic/value_loss``."""
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        """Flush and close everything; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._progress is not None:
            self._progress.close()
        self._csv_file.close()
        self.writer.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ScalarWindow:
    """Means of the diagnostics added since the last :meth:`flush` (one value per update), and
    the maximum of the keys in ``track_max`` as ``<key>_max``, so a logged row also says what the
    worst update in its window did (e.g. the largest realised KL)."""

    def __init__(self, track_max: Callable[[str], bool] = lambda key: False) -> None:
        self._track_max = track_max
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._maxima: dict[str, float] = {}

    def add(self, scalars: Mapping[str, float]) -> None:
        """Add one update's diagnostics."""
        for key, value in scalars.items():
            value = float(value)
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1
            if self._track_max(key):
                self._maxima[key] = max(self._maxima.get(key, -math.inf), value)

    def flush(self) -> dict[str, float]:
        """The window's means and maxima; the window starts empty again."""
        out = {key: total / self._counts[key] for key, total in self._sums.items()}
        out.update({f"{key}_max": value for key, value in self._maxima.items()})
        self._sums, self._counts, self._maxima = {}, {}, {}
        return out
