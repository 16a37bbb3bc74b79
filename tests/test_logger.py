"""progress.csv, TensorBoard purge on resume, the progress display and episode tracking."""

import csv
import io
import time

import numpy as np
import pytest

from harl.utils.logger import BASE_COLUMNS, CompletedEpisodes, EpisodeTracker, RunLogger, row_grid


def read_rows(run_dir):
    with open(run_dir / "progress.csv", newline="") as file:
        return list(csv.DictReader(file))


def episodes(returns, **metrics):
    return CompletedEpisodes(
        np.asarray(returns, dtype=np.float64),
        {name: np.asarray(values, dtype=np.float64) for name, values in metrics.items()},
    )


def test_csv_columns_blanks_and_window_means(tmp_path):
    with RunLogger(str(tmp_path), ("won",), 1000, disable_progress=True) as logger:
        logger.add_train_episodes(episodes([1.0, 3.0], won=[1.0, 0.0]))
        logger.add_train_episodes(episodes([], won=[]))
        logger.log_row(100)
        rows = read_rows(tmp_path)  # readable before close: each row is flushed
        assert list(rows[0]) == list(BASE_COLUMNS) + ["train_won", "eval_won"]
        assert float(rows[0]["train_episode_return"]) == 2.0
        assert float(rows[0]["train_won"]) == 0.5
        assert rows[0]["eval_episode_return"] == rows[0]["eval_won"] == ""
        assert float(rows[0]["fps"]) > 0
        # the window restarts after each row; an eval-only row leaves the train cells blank
        evaluation = {"eval_episode_return": -4.0, "eval_won": 1.0, "fps": 7.0}
        logger.log_row(200, wall_time=12.5, row=evaluation)
    row = read_rows(tmp_path)[1]
    assert row["train_episode_return"] == row["train_won"] == ""
    assert (row["wall_time"], row["fps"], row["eval_episode_return"], row["eval_won"]) == (
        "12.5",
        "7.0",
        "-4.0",
        "1.0",
    )


def test_unknown_columns_are_rejected(tmp_path):
    with RunLogger(str(tmp_path), (), 1000, disable_progress=True) as logger:
        with pytest.raises(ValueError, match="not progress.csv columns"):
            logger.log_row(1, row={"eval_won": 1.0})
        logger.add_train_episodes(episodes([1.0], won=[1.0]))
        with pytest.raises(ValueError, match="episode_metric_names"):
            logger.log_row(1)


def test_resume_truncates_csv_and_purges_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunLogger(str(tmp_path), (), 1000, disable_progress=True) as logger:
        for step in (100, 200, 300):
            logger.log_row(step, row={"eval_episode_return": float(step)})
    with RunLogger(str(tmp_path), (), 1000, start_step=200, start_wall=50.0, disable_progress=True) as logger:
        assert [r["env_steps"] for r in read_rows(tmp_path)] == ["100", "200"]
        assert logger.wall_time() >= 50.0
        logger.log_row(300, row={"eval_episode_return": -1.0})
    rows = read_rows(tmp_path)
    assert [(r["env_steps"], r["eval_episode_return"]) for r in rows] == [
        ("100", "100.0"),
        ("200", "200.0"),
        ("300", "-1.0"),
    ]
    assert float(rows[-1]["wall_time"]) >= 50.0
    events = EventAccumulator(str(tmp_path / "logs"))
    events.Reload()
    points = [(e.step, e.value) for e in events.Scalars("eval/episode_return")]
    assert points == [(100, 100.0), (200, 200.0), (300, -1.0)]


def test_log_scalars_go_to_tensorboard_only(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunLogger(str(tmp_path), (), 1000, disable_progress=True) as logger:
        logger.log_scalars({"agent0/policy_loss": 0.5}, 10)
    assert read_rows(tmp_path) == []
    events = EventAccumulator(str(tmp_path / "logs"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("agent0/policy_loss")] == [(10, 0.5)]


def test_non_tty_progress_prints_plain_lines(tmp_path):
    stream = io.StringIO()  # not a terminal, like CI or a redirected log
    with RunLogger(str(tmp_path), (), 1000, stream=stream, plain_interval_s=0.0) as logger:
        logger.advance(250)
        time.sleep(0.01)
        logger.advance(500)
        logger.log_row(500, row={"eval_episode_return": 1.5})
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 3  # one per update; close does not repeat the last line
    # one mark gives no rate yet: no fps, no ETA
    assert lines[0] == "[harl] 250/1,000 steps (25.0%) | measuring speed | train return - | eval return -"
    assert lines[1].startswith("[harl] 500/1,000 steps (50.0%) | ") and " fps | ETA " in lines[1]
    assert "eval return 1.5" in lines[-1]


def test_progress_shows_the_win_rate_of_environments_that_have_one(tmp_path):
    stream = io.StringIO()
    with RunLogger(str(tmp_path), ("win_rate",), 1000, stream=stream, plain_interval_s=0.0) as logger:
        logger.log_row(100, row={"eval_episode_return": 1.5, "eval_win_rate": 0.75})
    assert "eval return 1.5 | eval win rate 0.75" in stream.getvalue()


def test_progress_shows_training_return_and_rate_as_episodes_finish(tmp_path):
    stream = io.StringIO()
    with RunLogger(str(tmp_path), ("win_rate", "kills"), 1000, stream=stream, plain_interval_s=0.0) as logger:
        logger.advance(10)
        logger.add_train_episodes(episodes([2.0, 4.0], win_rate=[1.0, 0.0], kills=[3.0, 1.0]))
        logger.advance(20)  # no row logged yet: the display still shows the finished episodes
    lines = stream.getvalue().splitlines()
    assert "train return - | train win rate - | eval return - | eval win rate -" in lines[0]
    assert "train return 3 | train win rate 0.50 | eval return -" in lines[1]


def test_progress_phases_show_no_eta_and_the_rate_starts_after_them(tmp_path):
    stream = io.StringIO()
    with RunLogger(str(tmp_path), (), 1000, stream=stream, plain_interval_s=3600.0) as logger:
        logger.announce("compiling the batched environment")
        time.sleep(0.2)  # compiling: slow, must not count in the rate
        logger.advance(100, "warm-up 100/400 random steps")
        logger.advance(200, "warm-up 200/400 random steps")  # same phase: rate-limited
        logger.advance(400)  # training from here: the first mark starts the clock
        start = time.monotonic()
        time.sleep(0.05)
        logger.advance(500, mark=False)
        logger.advance(600)  # the second mark: a rate, printed at once
        elapsed = time.monotonic() - start
    lines = stream.getvalue().splitlines()
    assert (
        lines[0] == "[harl] 0/1,000 steps (0.0%) | compiling the batched environment | train return - | eval return -"
    )
    assert lines[1].startswith("[harl] 100/1,000 steps (10.0%) | warm-up 100/400 random steps | train return")
    assert lines[2].startswith("[harl] 400/1,000 steps (40.0%) | measuring speed |")
    assert all("ETA" not in line and "fps" not in line for line in lines[:3])
    assert lines[3].startswith("[harl] 600/1,000 steps (60.0%) | ") and len(lines) == 4
    fps = float(lines[3].split(" | ")[1].removesuffix(" fps").replace(",", ""))
    assert 200 / elapsed * 0.99 <= fps <= 200 / 0.05  # from the clock start, not from the beginning


def test_progress_bar_shows_the_phase_and_no_eta_until_a_rate(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    with RunLogger(str(tmp_path), ("win_rate",), 1000, stream=stream) as logger:
        logger.announce("compiling the batched environment")
        assert "compiling the batched environment" in stream.getvalue()
        logger.advance(100, "warm-up 100/400 random steps")
        assert "warm-up 100/400" in stream.getvalue()
        assert "ETA" not in stream.getvalue() and "<" not in stream.getvalue()  # no tqdm remaining time
        logger.advance(400)
        time.sleep(0.15)
        logger.advance(600)
        assert "ETA" in stream.getvalue().rsplit("\r", 1)[-1]


def test_row_grid_keeps_rows_within_a_few_percent():
    assert row_grid(10) == 1 and row_grid(50) == 1 and row_grid(51) == 2
    assert row_grid(1_000_000) * 100 / 1_000_000 <= 2.0


def test_non_tty_progress_is_rate_limited(tmp_path):
    stream = io.StringIO()
    with RunLogger(str(tmp_path), (), 1000, stream=stream, plain_interval_s=3600.0) as logger:
        for step in range(10, 1001, 10):
            logger.advance(step)
    lines = stream.getvalue().splitlines()
    # the first line, the one where the speed is first known, and the last at close
    assert len(lines) == 3 and lines[-1].startswith("[harl] 1,000/1,000") and "ETA" in lines[1]


def test_tty_progress_uses_a_bar(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    with RunLogger(str(tmp_path), (), 1000, start_step=100, stream=stream) as logger:
        logger.advance(600)
    assert "\r" in stream.getvalue() and "600/1.00k" in stream.getvalue()


def test_disabled_progress_is_silent(tmp_path):
    stream = io.StringIO()
    with RunLogger(str(tmp_path), (), 1000, stream=stream, disable_progress=True) as logger:
        logger.advance(10)
        logger.log_row(20)
    assert stream.getvalue() == ""


def test_episode_tracker_returns_and_metrics():
    tracker = EpisodeTracker(3)
    not_done = [{"episode_done": False}] * 3
    rewards = np.array([[1.0, 3.0], [0.0, 0.0], [-2.0, -2.0]], dtype=np.float32)
    finished = tracker.update(rewards, not_done)
    assert finished.returns.size == 0 and finished.metrics == {}
    infos = [
        {"episode_done": True, "episode_metrics": {"won": 1.0}},
        {"episode_done": False},
        {"episode_done": True, "episode_metrics": {"won": 0.0}},
    ]
    finished = tracker.update(rewards[..., None], infos)  # (E, N, 1) rewards work too
    np.testing.assert_allclose(finished.returns, [4.0, -4.0])  # sums of per-step agent means
    np.testing.assert_allclose(finished.metrics["won"], [1.0, 0.0])
    finished = tracker.update(rewards, [{"episode_done": True}] * 3)
    np.testing.assert_allclose(finished.returns, [2.0, 0.0, -2.0])  # finished envs restarted at 0
    assert finished.metrics == {}
    tracker.update(rewards, not_done)
    tracker.reset()
    np.testing.assert_allclose(tracker.update(rewards, [{"episode_done": True}] * 3).returns, [2.0, 0.0, -2.0])
