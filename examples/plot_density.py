"""Plot where the agents go: state-visitation densities on the coverage tasks over training.

    python examples/plot_density.py GROUP [GROUP ...] --out density.png [--episodes 20] [--points 4]

A GROUP is a run directory (``.../seed-...``) or the folder above a run's seeds
(``results/occupation/4agents-4targets/haqo/fig2_200000``), whose seeds are pooled. Each group
is one row; its columns are the env steps at which every seed has weights: the snapshots kept
with ``--keep_snapshots True`` and the final weights. Each panel is a 2D histogram of the
agents' positions over ``--episodes`` evaluation episodes per run (decentralised policy, the
same evaluation seed for every run), with the target regions as red circles and the share of
positions inside each. For ``--env occupation`` and ``--env pettingzoo_mpe --scenario
landmark_coverage``. Takes about a second per evaluated snapshot and run at 20 episodes.
"""

import argparse
import glob
import logging
import os
import sys

if __name__ == "__main__":  # first, before torch and JAX load: Ctrl+C ends with one line and exit 130
    from harl.utils.interrupt import install

    install("interrupted (Ctrl+C) before the figure was written; nothing was written")

from harl.cli import handle_cli_errors  # noqa: E402
from harl.utils.configs_tools import check_writable
from harl.utils.errors import ConfigError  # noqa: E402


def column_name(exp_dir: str) -> str:
    """The algorithm, or the variant of a sweep's ``<name>-<variant>_<steps>`` folder."""
    algo, exp_name = exp_dir.split(os.sep)[-2:]
    return exp_name.split("-", 1)[1].rsplit("_", 1)[0] if "-" in exp_name else algo


def group_runs(path: str) -> tuple[str, list[str]]:
    """``(row label, run directories)`` of a GROUP argument."""
    path = os.path.normpath(os.path.abspath(path))
    if os.path.isfile(os.path.join(path, "config.json")):
        return f"{column_name(os.path.dirname(path))}, {os.path.basename(path)[:10]}", [path]
    seeds = sorted(d for d in glob.glob(os.path.join(path, "seed-*")) if os.path.isfile(os.path.join(d, "config.json")))
    if not seeds:
        raise ConfigError(f"{path} is neither a run directory (with config.json) nor a folder of seed-* runs")
    return f"{column_name(path)} ({len(seeds)} seeds)", seeds


def main() -> None:
    """Collect every group's visitations and draw the grid."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groups", nargs="+", help="run directories or folders of seed-* runs, one row each")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes per run and point (>= 1)")
    parser.add_argument(
        "--points", type=int, default=4, help="points of training per row, spread evenly, the last always (0 = all)"
    )
    parser.add_argument("--eval_seed", type=int, default=12345, help="seed of the evaluation environments and policies")
    parser.add_argument("--title", default="State-visitation density", help="figure title")
    cli = parser.parse_args()
    if cli.episodes < 1 or cli.points < 0:
        raise ConfigError("--episodes must be at least 1 and --points at least 0")
    if not cli.out.endswith(".png"):
        raise ConfigError(f"--out must name a .png file, not {cli.out!r}")
    if os.path.isdir(cli.out):
        raise ConfigError(f"--out {cli.out} is a directory; name a .png file")
    check_writable(os.path.dirname(os.path.abspath(cli.out)), "--out", "the figure")
    groups = dict(group_runs(path) for path in cli.groups)  # checks every argument before evaluating
    if len(groups) < len(cli.groups):
        raise ConfigError("two GROUP arguments have the same row label; pass each group once")

    from harl.experiments.density import group_visitations, held_shares, plan_group, plot_densities

    plans = {label: plan_group(runs, cli.episodes, cli.eval_seed, cli.points) for label, runs in groups.items()}
    drawn = {}
    for label, runs in groups.items():
        drawn[label] = group_visitations(runs, cli.episodes, cli.eval_seed, cli.points, plans[label])
        for v in drawn[label]:
            shares = " ".join(f"{s:.2f}" for s in held_shares(v))
            print(f"{label} at {v.step:,} steps: share of positions in each target: {shares}", flush=True)
    plot_densities(drawn, cli.title, cli.out)
    print(f"wrote {cli.out}")


if __name__ == "__main__":
    sys.exit(handle_cli_errors(main))
