"""Learning-curve pictures drawn from a run's ``progress.csv``."""
from __future__ import annotations

import csv
import os

import matplotlib

matplotlib.use("Agg")  # runs are headless; never try to open a window
import matplotlib.pyplot as plt  # noqa: E402

from harl.utils.checkpoint import atomic_write  # noqa: E402

CURVE_NAME = "learning_curve.png"


def _column(rows: list[dict[str, str]], name: str) -> tuple[list[float], list[float]]:
    points = [(float(r["env_steps"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]
    return [p[0] for p in points], [p[1] for p in points]


def plot_learning_curve(run_dir: str, title: str) -> str | None:
    """Draw train and eval episode returns against env steps into ``run_dir/learning_curve.png``.

    Returns the picture's path, or None while ``progress.csv`` has no returns yet.
    """
    with open(os.path.join(run_dir, "progress.csv"), newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    curves = {label: _column(rows, column) for label, column in
              (("train", "train_episode_return"), ("eval", "eval_episode_return"))}
    if not any(xs for xs, _ in curves.values()):
        return None
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    for label, (xs, ys) in curves.items():
        if xs:
            axes.plot(xs, ys, marker="o" if label == "eval" else None, markersize=3, label=label)
    path = os.path.join(run_dir, CURVE_NAME)
    save_figure(figure, axes, title, "episode return", path)
    return path


def save_figure(figure, axes, title: str, ylabel: str, path: str) -> None:
    """Label a returns-against-env-steps plot, write it atomically as PNG and free it."""
    axes.set_xlabel("environment steps")
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    atomic_write(path, lambda handle: figure.savefig(handle, format="png"))
    plt.close(figure)
