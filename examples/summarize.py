"""Summarise finished runs: ``python examples/summarize.py [RESULTS_DIR] [--plot_dir DIR]``.

Prints a Markdown table of the final evaluation of every seed, with mean, std, min and max per
``<env>/<task>/<algo>/<exp_name>``: the evaluation return, or for the StarCraft family (smac,
smacv2, smax) the evaluation win rate, the paper's unit. With ``--plot_dir`` also draws one
mean-and-range learning curve per group, and per ``<env>/<task>/<exp_name>`` one picture that
overlays the algorithms run under that experiment name.
"""

import argparse
import os
import sys

if __name__ == "__main__":  # first, before matplotlib loads: Ctrl+C ends with one line and exit 130
    from harl.utils.interrupt import install

    install("interrupted (Ctrl+C) before the summary was printed; nothing was written")

from harl.cli import handle_cli_errors  # noqa: E402
from harl.utils.configs_tools import check_writable
from harl.utils.errors import ConfigError  # noqa: E402
from harl.utils.interrupt import set_message  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_dir", nargs="?", default="results", help="root of the run directories")
    parser.add_argument("--plot_dir", default="", help="write <group>.png learning curves here")
    args = parser.parse_args()
    if not os.path.isdir(args.results_dir):
        state = "is a file, not a directory" if os.path.exists(args.results_dir) else "does not exist"
        raise ConfigError(f"{args.results_dir} {state}; pass the root of the run directories (default: results)")
    if args.plot_dir:
        check_writable(args.plot_dir, "--plot_dir", "the plots")
    # loads torch and matplotlib: after the checks
    from harl.utils.results_tools import by_task, collect, markdown_table, plot_comparison, plot_group

    groups = collect(args.results_dir)
    if not groups:
        raise SystemExit(f"no run with an evaluation under {args.results_dir}")
    print(markdown_table(groups))
    if args.plot_dir:
        set_message(
            f"interrupted (Ctrl+C) while writing the plots to {args.plot_dir}; run the command again to write them all"
        )
        os.makedirs(args.plot_dir, exist_ok=True)
        for group, runs in groups.items():
            path = os.path.join(args.plot_dir, group.replace("/", "__") + ".png")
            plot_group(runs, group, path)
            print(f"wrote {path}")
        for task, algos in by_task(groups).items():
            if len(algos) > 1:
                path = os.path.join(args.plot_dir, task.replace("/", "__") + "__algorithms.png")
                plot_comparison(algos, task, path)
                print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(handle_cli_errors(main))
