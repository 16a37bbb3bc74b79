"""State-visitation densities on the coverage tasks (the occupation game, MPE landmark coverage;
the paper's Figs. 1, 2 and 5): where a run's agents go under its policy, at each weight snapshot
kept during training (``keep_snapshots``) and at the end, pooled over the seeds of a run group.

The positions are recorded during ordinary evaluation episodes (:func:`evaluate_run` with a
hook called before every step), so they are those of the evaluated, decentralised policy.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np

from harl.experiments.evaluation import evaluate_run
from harl.runners.base_runner import SNAPSHOTS_DIR
from harl.utils.configs_tools import load_config_json
from harl.utils.errors import ConfigError


@dataclass
class Visitation:
    """Positions visited by a group of runs' agents at one point of training."""

    step: int  # env step of the weights
    positions: np.ndarray  # (M, 2): every agent at every evaluation step
    targets: np.ndarray  # (K, 2): the target regions' centres
    hold_radius: float  # a target is held while an agent is this close


def weight_dirs(run_dir: str) -> dict[int, str]:
    """``env step -> weights folder`` of a run: its snapshots and, when it finished, its final
    weights (at ``num_env_steps``, where they replace a snapshot of the same step)."""
    found = {}
    for path in glob.glob(os.path.join(run_dir, "models", SNAPSHOTS_DIR, "step_*")):
        name = os.path.basename(path)
        if name.removeprefix("step_").isdigit() and os.path.isdir(path):  # skips *.partial
            found[int(name.removeprefix("step_"))] = path
    if os.path.isfile(os.path.join(run_dir, "models", "actor_agent0.pt")):
        steps = int(load_config_json(os.path.join(run_dir, "config.json"))[1]["train"]["num_env_steps"])
        found[max([steps, *found])] = os.path.join(run_dir, "models")
    return dict(sorted(found.items()))


def run_visitation(run_dir: str, weights_dir: str, step: int, episodes: int, eval_seed: int) -> Visitation:
    """Evaluate ``run_dir``'s policy with ``weights_dir`` for ``episodes`` episodes and record
    every agent's position before every step."""
    positions: list[np.ndarray] = []
    places: list[np.ndarray] = []
    radius: list[float] = []

    def record(runner) -> None:
        envs = getattr(runner.eval_envs, "envs", None)
        if not places:  # the first step: check the environment once, keep its targets
            first = envs[0] if envs else None
            if first is None or not hasattr(first, "positions") or not hasattr(first, "hold_radius"):
                raise ConfigError(
                    f"{run_dir}: its environment ({runner.args['env']}) has no target regions to plot; visitation "
                    "densities are for --env occupation and --env pettingzoo_mpe --scenario landmark_coverage"
                )
            places.append(first.target_places)
            radius.append(first.hold_radius)
        positions.append(np.concatenate([env.positions for env in envs]))

    # in-process environments, so that the hook can read their positions
    evaluate_run(run_dir, episodes, eval_seed, weights_dir, record, overrides=("--n_env_workers", "0"))
    return Visitation(step, np.concatenate(positions), places[0], radius[0])


def plan_group(
    run_dirs: list[str], episodes: int, eval_seed: int, max_points: int = 0
) -> tuple[list[int], list[dict[int, str]]]:
    """The env steps :func:`group_visitations` evaluates and every run's weights folders, after
    every check that needs nothing built (each run's files and config, the environment's
    package), so that a command refuses bad arguments before evaluating anything.

    Raises:
        ConfigError: a run that cannot be evaluated, or no weights at a common env step.
    """
    from harl.experiments.evaluation import check_run

    per_run = [weight_dirs(run_dir) for run_dir in run_dirs]
    common = sorted(set.intersection(*(set(found) for found in per_run))) if per_run else []
    if not common:
        raise ConfigError(
            f"{', '.join(run_dirs)}: no weights at a common env step (final weights or "
            f"models/{SNAPSHOTS_DIR}/, written with --keep_snapshots True)"
        )
    if max_points and len(common) > max_points:
        picks = np.unique(np.linspace(len(common) - 1, 0, max_points).round().astype(int))  # the last first
        common = [common[i] for i in picks]
    for run_dir, found in zip(run_dirs, per_run):
        check_run(run_dir, episodes, eval_seed, found[common[0]])
    return common, per_run


def group_visitations(
    run_dirs: list[str],
    episodes: int,
    eval_seed: int,
    max_points: int = 0,
    plan: tuple[list[int], list[dict[int, str]]] | None = None,
) -> list[Visitation]:
    """One :class:`Visitation` per env step that every run of the group has weights for (the
    seeds of one configuration), their positions pooled; at most ``max_points`` steps, spread
    evenly and always including the last (0 = all). ``plan``: :func:`plan_group`'s result, when
    the caller checked the group already."""
    common, per_run = plan or plan_group(run_dirs, episodes, eval_seed, max_points)
    out = []
    for step in common:
        parts = [
            run_visitation(run_dir, found[step], step, episodes, eval_seed) for run_dir, found in zip(run_dirs, per_run)
        ]
        out.append(
            Visitation(step, np.concatenate([p.positions for p in parts]), parts[0].targets, parts[0].hold_radius)
        )
    return out


def held_shares(visitation: Visitation) -> np.ndarray:
    """``(K,)`` share of the recorded agent positions inside each target region."""
    distance = np.linalg.norm(visitation.positions[:, None, :] - visitation.targets[None], axis=-1)
    return (distance <= visitation.hold_radius).mean(axis=0)


def plot_densities(groups: dict[str, list[Visitation]], title: str, path: str, bins: int = 60) -> None:
    """A grid of 2D visitation histograms (rows: groups, columns: points of training) with the
    target regions drawn as circles and each region's share of the positions written beside it."""
    from matplotlib.colors import LogNorm

    from harl.utils.checkpoint import atomic_write
    from harl.utils.plotting import plt  # headless backend, set once there

    n_rows = len(groups)
    n_cols = max(len(v) for v in groups.values())
    all_positions = np.concatenate([v.positions for vs in groups.values() for v in vs])
    half = max(1.0, float(np.percentile(np.abs(all_positions), 97)))  # a few strays must not shrink the rest
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.6 * n_rows), dpi=100, squeeze=False)
    for row, (label, visitations) in enumerate(groups.items()):
        for col in range(n_cols):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(visitations):
                ax.axis("off")
                continue
            v = visitations[col]
            ax.hist2d(
                v.positions[:, 0],
                v.positions[:, 1],
                bins=bins,
                range=[[-half, half], [-half, half]],
                norm=LogNorm(),
                cmap="viridis",
            )
            for k, (centre, share) in enumerate(zip(v.targets, held_shares(v))):
                ax.add_patch(plt.Circle(centre, v.hold_radius, fill=False, color="red", lw=1))
                ax.text(
                    centre[0], centre[1] + v.hold_radius * 1.2, f"{share:.2f}", color="red", ha="center", fontsize=7
                )
            ax.set_aspect("equal")
            ax.set_title(f"{v.step:,} steps", fontsize=8)
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda handle: figure.savefig(handle, format="png"))
    plt.close(figure)
