"""Run logging: TensorBoard, ``progress.csv``, a progress display, and episode-return tracking.

``progress.csv`` columns: ``env_steps, wall_time, fps, train_episode_return,
eval_episode_return``, then ``train_<metric>`` and ``eval_<metric>`` for the environment's
``episode_metric_names``. A cell is blank when that quantity was not measured in that row.
Algorithm diagnostics (losses, KL, ...) go to TensorBoard only, through :meth:`log_scalars`.

The progress display (a bar on terminals, a plain line every 30 s elsewhere) says what the run
is doing until a speed can be measured (``compiling the batched environment``, ``warm-up
4,000/10,000 random steps``, ``measuring speed``) and only then shows fps and an ETA, from the
training rate measured after compilation and warm-up. Beside them: the mean return and headline
rate (win rate, score rate, coverage; :mod:`harl.utils.metrics`) of the last
``DISPLAY_EPISODES`` finished training episodes, and the last evaluation's.

Length (about 500 lines): the three outputs of a run (TensorBoard, ``progress.csv``, the
progress display) and the episode bookkeeping that feeds all three.
"""

from __future__ import annotations

import csv
import glob
import io
import math
import os
import sys
import time
from collections import deque
from typing import IO, Callable, Mapping, NamedTuple, Sequence

import numpy as np
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from harl.utils.checkpoint import atomic_write
from harl.utils.metrics import headline_metric_name

BASE_COLUMNS = ("env_steps", "wall_time", "fps", "train_episode_return", "eval_episode_return")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# progress.csv gets a row at least every 1/PROGRESS_ROWS of the budget, whatever the evaluation
# and log intervals (the runners ask :func:`row_grid` how often that is in their own units)
PROGRESS_ROWS = 50
# the progress display's training return and rate: means over the last this many episodes
DISPLAY_EPISODES = 100
# seconds between redraws of the terminal bar (tqdm's own default minimum)
_BAR_REFRESH_S = 0.1


def row_grid(total_units: int) -> int:
    """Units (rollouts, vectorised steps) between the rows that keep ``progress.csv`` at least
    one row every ``1 / PROGRESS_ROWS`` of a budget of ``total_units``: a row is due at every
    multiple of it. A fixed grid, so a resumed run logs the rows the uninterrupted one would."""
    return max(1, math.ceil(total_units / PROGRESS_ROWS))


def _phase_kind(phase: str | None) -> str | None:
    """What a phase is, without its counts: ``"warm-up 400/1,000 random steps"`` -> ``"warm-up"``."""
    return None if phase is None else phase.split(" ", 1)[0]


class _TqdmProgress:
    """Interactive bar, for terminals. tqdm's own rate and remaining time are left out of it: they
    would count compilation and warm-up; the logger's status text says fps and ETA instead."""

    def __init__(self, total: int, initial: int, stream: IO[str]) -> None:
        self._bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            file=stream,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
        )
        self._last_draw = -math.inf
        self._latest: tuple[int, Callable[[], str]] | None = None

    def update(self, step: int, status: Callable[[], str], force: bool) -> None:
        self._latest = (step, status)
        now = time.monotonic()
        if not force and now - self._last_draw < _BAR_REFRESH_S:
            return
        self._last_draw = now
        self._draw()

    def _draw(self) -> None:
        step, status = self._latest
        self._bar.set_postfix_str(status(), refresh=False)
        self._bar.n = step
        self._bar.refresh()

    def close(self) -> None:
        if self._latest is not None:  # the final state, even if it came within the refresh interval
            self._draw()
        self._bar.close()


class _PlainProgress:
    """One full line every ``interval_s`` seconds, for logs and CI, and one at once when the run
    enters a new phase (compiling, warm-up, training) or its speed first becomes known.

    tqdm keeps redrawing one line with carriage returns; written to a file or a CI log that
    becomes one endless line (or thousands of partial ones), so non-terminals get plain lines.
    """

    def __init__(self, total: int, stream: IO[str], interval_s: float) -> None:
        self._total = total
        self._stream = stream
        self._interval_s = interval_s
        self._last_print = -math.inf
        self._pending: tuple[int, Callable[[], str]] | None = None
        self._last_line = ""

    def update(self, step: int, status: Callable[[], str], force: bool) -> None:
        self._pending = (step, status)
        now = time.monotonic()
        if force or now - self._last_print >= self._interval_s:
            self._emit()
            self._last_print = now

    def _line(self) -> str:
        step, status = self._pending
        self._pending = None
        percent = 100.0 * step / self._total if self._total else 100.0
        return f"[harl] {step:,}/{self._total:,} steps ({percent:.1f}%) | {status()}"

    def _emit(self) -> None:
        self._last_line = self._line()
        print(self._last_line, file=self._stream, flush=True)

    def close(self) -> None:
        """The last state, unless the last line already says it."""
        if self._pending is not None:
            line = self._line()
            if line != self._last_line:
                print(line, file=self._stream, flush=True)


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
        return CompletedEpisodes(returns, {name: np.asarray(values) for name, values in metrics.items()})

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
        # the display: the headline metric, recent training episodes, the last evaluation
        self.headline = headline_metric_name(self.metric_names)
        self._recent_returns: deque[float] = deque(maxlen=DISPLAY_EPISODES)
        self._recent_rates: deque[float] = deque(maxlen=DISPLAY_EPISODES)
        self._last_eval: float | None = None
        self._last_eval_rate: float | None = None
        self._total_steps = total_steps
        self._steps = start_step
        self._phase: str | None = None
        # the training rate: measured from the first mark after the phases (compilation,
        # warm-up) to the latest one
        self._rate_start: tuple[float, int] | None = None
        self._rate: float | None = None
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
                row for row in csv.DictReader(file) if row.get("env_steps") and float(row["env_steps"]) <= start_step
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
            self._recent_returns.extend(episodes.returns.tolist())
        for name, values in episodes.metrics.items():
            self._window_metrics.setdefault(name, []).append(values)
        if self.headline in episodes.metrics:
            self._recent_rates.extend(episodes.metrics[self.headline].tolist())

    @property
    def phase(self) -> str | None:
        """What the display says the run is doing instead of fps and ETA (None: training)."""
        return self._phase

    @phase.setter
    def phase(self, phase: str | None) -> None:
        """Set the phase without drawing (e.g. back to the one before an :meth:`announce`)."""
        self._phase = phase

    def announce(self, phase: str) -> None:
        """Show ``phase`` (e.g. ``"compiling the batched environment"``) at once, before the
        steps it is about: the display keeps it until the next :meth:`advance`."""
        self._phase = phase
        self._draw(force=True)

    def advance(self, env_steps: int, phase: str | None = None, mark: bool = True) -> None:
        """Move the progress display to ``env_steps`` (call after every rollout or vector step).

        Args:
            env_steps: total environment steps so far.
            phase: what the run is doing while no training rate can be measured (e.g.
                ``"warm-up 4,000/10,000 random steps"``), shown instead of fps and ETA; None
                once it trains.
            mark: the end of a whole cycle of the loop (a rollout and its update; collection and
                the updates it owes): the training rate is measured from the first mark after
                the phases to the latest one, so it counts neither compilation nor warm-up.
        """
        new_kind = _phase_kind(phase) != _phase_kind(self._phase)
        self._phase, self._steps = phase, env_steps
        first_rate = False
        if mark and phase is None:
            now = time.monotonic()
            if self._rate_start is None:
                self._rate_start = (now, env_steps)
            elif now > self._rate_start[0] and env_steps > self._rate_start[1]:
                first_rate = self._rate is None
                self._rate = (env_steps - self._rate_start[1]) / (now - self._rate_start[0])
        self._draw(force=new_kind or first_rate)

    def exclude_from_rate(self, seconds: float) -> None:
        """Leave ``seconds`` just spent (e.g. compiling the evaluation environment) out of the
        training rate; time before the rate's first mark is never in it."""
        if self._rate_start is not None:
            self._rate_start = (self._rate_start[0] + seconds, self._rate_start[1])

    def _draw(self, force: bool = False) -> None:
        if self._progress is not None:
            self._progress.update(self._steps, self.status, force)

    def status(self) -> str:
        """The display's text after the step count: the phase, or fps and ETA (once a training
        rate is known), then training and evaluation return and headline rate."""
        if self._phase is not None:
            parts = [self._phase]
        elif self._rate is None:
            parts = ["measuring speed"]
        else:
            eta = max(self._total_steps - self._steps, 0) / self._rate
            parts = [f"{self._rate:,.0f} fps", f"ETA {tqdm.format_interval(eta)}"]
        label = None if self.headline is None else self.headline.replace("_", " ")
        train = float(np.mean(self._recent_returns)) if self._recent_returns else None
        parts.append(f"train return {_fmt(train)}")
        if label is not None:
            rate = float(np.mean(self._recent_rates)) if self._recent_rates else None
            parts.append(f"train {label} {_fmt_rate(rate)}")
        parts.append(f"eval return {_fmt(self._last_eval)}")
        if label is not None:
            parts.append(f"eval {label} {_fmt_rate(self._last_eval_rate)}")
        return " | ".join(parts)

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
        self.log_scalars({self._tag(column): value for column, value in values.items()}, env_steps)
        self._last_eval = values.get("eval_episode_return", self._last_eval)
        if self.headline is not None:
            self._last_eval_rate = values.get(f"eval_{self.headline}", self._last_eval_rate)
        self._steps = max(self._steps, env_steps)
        self._draw()

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
