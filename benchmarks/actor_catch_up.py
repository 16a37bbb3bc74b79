"""Issue 32, the 3m actor's lag behind its critic: does the actor reach its critic's arg-max when
the critic stops moving?

Takes a finished HAQO run with ``critic_form: additive_local`` (its final checkpoint: networks,
optimisers and replay buffer), freezes its critic and runs only HAQO's actor rounds
(``HAQORunner.actor_round``, the run's own settings: batch, candidates, weights, entropy term,
trust region) on the run's replay buffer, for each number of rounds given; then evaluates the
actors from the same evaluation seed and compares each agent's actions with its critic's arg-max
(``critic_greedy_eval.py``'s probe).

If the actors' agreement with the arg-max and their win rate rise towards the critic's greedy
policy within a few thousand rounds, the actor lags a moving critic (more actor movement per
critic update would close it: ``policy_freq``, ``actor_steps``, ``kl_threshold``); if they stay
where they are, the actor cannot represent or is not pulled to its critic's arg-max (the
objective: the entropy term, the weights; or the network).

    python benchmarks/actor_catch_up.py results/smax/3m/haqo/EXP/seed-... --rounds 0 1000 4000 --eval_episodes 200
    python benchmarks/actor_catch_up.py RUN_DIR --rounds 1000 --set kl_threshold=0.03   # other actor settings

``--set key=value`` changes a setting of the rebuilt run (as ``train.py --key value``), e.g. the
actor's trust region, to compare how fast the actor follows its critic under other settings.

``--fresh_actors`` keeps only the run's critic and replay buffer and trains newly initialised
actors against them: a fit test of the actor itself, where ``--set`` may also change the actor's
network (``hidden_sizes`` with ``critic_hidden_sizes`` set to the run's, ``n_timesteps``, or
``actor=categorical``, the exact actor), which a trained checkpoint cannot load:

    python benchmarks/actor_catch_up.py RUN_DIR --fresh_actors --rounds 4000 \
        --set "hidden_sizes=[256,256,256]" "critic_hidden_sizes=[64,64,64]"

Each number of rounds starts again from the checkpoint in a fresh runner. Prints one Markdown
row per number of rounds; nothing is written into the run directory.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys
import time

from harl.experiments.evaluation import rebuilt_runner
from harl.utils.checkpoint import load_checkpoint

_SPEC = importlib.util.spec_from_file_location(
    "critic_greedy_eval", pathlib.Path(__file__).resolve().parent / "critic_greedy_eval.py"
)
critic_greedy_eval = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = critic_greedy_eval
_SPEC.loader.exec_module(critic_greedy_eval)


def main() -> None:
    """For each number of rounds: restore, train the actors only, evaluate with the probe."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--rounds", type=int, nargs="+", default=[0, 1000, 4000])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="settings to change")
    parser.add_argument("--eval_episodes", type=int, default=200)
    parser.add_argument("--eval_seed", type=int, default=12345)
    parser.add_argument(
        "--fresh_actors", action="store_true", help="newly initialised actors; only the critic and buffer are loaded"
    )
    cli = parser.parse_args()
    if any(rounds < 0 for rounds in cli.rounds):
        raise SystemExit(f"--rounds must be >= 0, got {cli.rounds}")
    if any("=" not in item for item in cli.set):
        raise SystemExit(f"--set takes key=value items, got {cli.set}")
    overrides = tuple(part for item in cli.set for part in (f"--{item.split('=', 1)[0]}", item.split("=", 1)[1]))
    checkpoint = os.path.join(cli.run_dir, "models", "checkpoint.pt")
    if not os.path.isfile(checkpoint):
        raise SystemExit(f"{cli.run_dir} has no models/checkpoint.pt (the replay buffer this control trains on)")
    critic_greedy_eval.checked_runs([cli.run_dir], cli.eval_episodes, cli.eval_seed, overrides)
    fresh = ", fresh actors" if cli.fresh_actors else ""
    for index, rounds in enumerate(cli.rounds):
        with rebuilt_runner(
            cli.run_dir, cli.eval_episodes, cli.eval_seed, overrides=overrides, load_weights=not cli.fresh_actors
        ) as runner:
            net = critic_greedy_eval.additive_local_net(runner, cli.run_dir)
            state = load_checkpoint(checkpoint, runner.device)["algorithm"]
            if cli.fresh_actors:
                try:
                    runner.critic.load_state_dict(state["critic"])
                except RuntimeError:
                    raise SystemExit(
                        f"error: the run's critic does not fit the rebuilt one; with another hidden_sizes, "
                        f"also --set critic_hidden_sizes=... to the run's ({cli.set})"
                    ) from None
                runner.buffer.load_state_dict(state["buffer"])
            else:
                runner.load_algorithm_state(state)
            if index == 0:  # after the first load, so that a critic that does not fit prints nothing else
                print(f"{cli.run_dir}, critic frozen{fresh}{', ' + ' '.join(cli.set) if cli.set else ''}")
                print(
                    "| actor rounds | actors: win rate / return | actor = critic arg-max | utility given up where not "
                    "| heads' arg-maxes differ: share, actor = arg-max there | s |"
                )
                print("|---|---|---|---|---|---|")
            start = time.perf_counter()
            for _ in range(rounds):  # HAQO's actor round alone: the critic is not updated
                runner.actor_round(runner.buffer.sample().to(runner.device))
            seconds = time.perf_counter() - start
            tally = critic_greedy_eval.Agreement()
            runner.actor = [
                critic_greedy_eval.AgreementProbe(actor, net, i, tally) for i, actor in enumerate(runner.actor)
            ]
            result = runner.evaluate(None)
        print(
            f"| {rounds:,} | {result['eval_win_rate']:.3f} / {result['eval_episode_return']:.2f} | {tally.row()} "
            f"| {seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
