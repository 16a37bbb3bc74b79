"""The headline episode metric of an environment: the rate a task is judged by beside its return.

StarCraft (SMAC, SMACv2, SMAX) is judged by its win rate, Football by its score rate, the
occupation and coverage tasks by their coverage, the toy env by its success rate; MPE's standard
scenarios and Multi-Agent MuJoCo have none (their return is the headline). The progress display
shows it beside the return, and ``learning_curve.png`` draws it in a second panel.
"""

from __future__ import annotations

from typing import Iterable

# In order of precedence, should an environment report more than one of them.
HEADLINE_METRICS = ("win_rate", "score_rate", "coverage", "success_rate")


def headline_metric_name(metric_names: Iterable[str]) -> str | None:
    """The headline among an environment's ``episode_metric_names`` (e.g. ``"win_rate"``), or None."""
    names = set(metric_names)
    return next((name for name in HEADLINE_METRICS if name in names), None)


def headline_metric_of_columns(columns: Iterable[str]) -> str | None:
    """The headline metric of a ``progress.csv`` whose header is ``columns`` (from its
    ``train_<metric>`` / ``eval_<metric>`` columns), or None."""
    names = [column.split("_", 1)[1] for column in columns if column.startswith(("train_", "eval_"))]
    return headline_metric_name(names)
