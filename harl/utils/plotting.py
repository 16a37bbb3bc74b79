"""Learning-curve pictures drawn from a run's ``progress.csv``."""

from __future__ import annotations

import csv
import os

import matplotlib

matplotlib.use("Agg")  # runs are headless; never try to open a window
import matplotlib.pyplot as plt  # noqa: E402

from harl.utils.checkpoint import atomic_write  # noqa: E402
from harl.utils.metrics import headline_metric_of_columns  # noqa: E402

CURVE_NAME = "learning_curve.png"


def _column(rows: list[dict[str, str]], name: str) -> tuple[list[float], list[float]]:
    points = [(float(r["env_steps"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]
    return [p[0] for p in points], [p[1] for p in points]


def learning_curve_figure(rows: list[dict[str, str]], title: str):
    """The figure of :func:`plot_learning_curve` for ``progress.csv`` rows, or None while they
    hold no returns: episode return (train and eval), and beside it, for an environment with a
    headline metric (win rate, score rate, coverage: :mod:`harl.utils.metrics`), that metric."""
    headline = headline_metric_of_columns(rows[0]) if rows else None
    panels = [("episode_return", "episode return")]
    if headline is not None:
        panels.append((headline, headline.replace("_", " ")))
    curves = [{label: _column(rows, f"{label}_{name}") for label in ("train", "eval")} for name, _ in panels]
    if not any(xs for xs, _ in curves[0].values()):
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), dpi=100, squeeze=False)
    for ax, panel_curves in zip(axes[0], curves):
        for label, (xs, ys) in panel_curves.items():
            if xs:
                ax.plot(xs, ys, marker="o" if label == "eval" else None, markersize=3, label=label)
    label_figure(figure, list(axes[0]), title, [ylabel for _, ylabel in panels])
    return figure


def plot_learning_curve(run_dir: str, title: str) -> str | None:
    """Draw train and eval episode returns against env steps into ``run_dir/learning_curve.png``,
    with the environment's headline metric (win rate, score rate, coverage) in a second panel
    when it has one.

    Returns the picture's path, or None while ``progress.csv`` has no returns yet.
    """
    with open(os.path.join(run_dir, "progress.csv"), newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    figure = learning_curve_figure(rows, title)
    if figure is None:
        return None
    path = os.path.join(run_dir, CURVE_NAME)
    write_figure(figure, path)
    return path


def label_figure(figure, axes, title: str, ylabels) -> None:
    """Label plots against env steps: one axes and y label, or a list of each (panels side by
    side, the title above them all)."""
    if not isinstance(axes, (list, tuple)):
        axes, ylabels = [axes], [ylabels]
    for ax, ylabel in zip(axes, ylabels):
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if len(axes) == 1:
        axes[0].set_title(title, fontsize=10)
    else:
        figure.suptitle(title, fontsize=10)


def write_figure(figure, path: str) -> None:
    """Write ``figure`` atomically as PNG and free it."""
    figure.tight_layout()
    atomic_write(path, lambda handle: figure.savefig(handle, format="png"))
    plt.close(figure)


def save_figure(figure, axes, title: str, ylabel, path: str) -> None:
    """Label a plot against env steps (one axes, or a list of panels with one y label each),
    write it atomically as PNG and free it."""
    label_figure(figure, axes, title, ylabel)
    write_figure(figure, path)
