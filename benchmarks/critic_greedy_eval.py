"""Issue 32, the 3m plateau: is the actor or the critic the limit? Evaluate a trained HAQO (or
HASAC) run on SMAX twice from the same evaluation seed: once with its actors (as
``examples/evaluate.py`` does), once acting greedily on its own critic.

With ``critic_form: additive_local`` the critic is ``Q(s, a) = v(s) + sum_i u(o_i, i)[a_i]``, so
the joint arg-max is every agent's own arg-max of ``u(o_i, i)`` over its available actions:
a decentralised policy that reads only the agent's observation, as the actor does. Its win rate
is what the critic's rankings are worth on their own. If the critic's greedy policy wins clearly
more than the actor, the actor lags its critic (the update, the trust region, the entropy term);
if it wins about as much, the critic is the limit. The utilities of the twin heads are averaged.

    python benchmarks/critic_greedy_eval.py results/smax/3m/haqo/EXP/seed-* --eval_episodes 200

Prints one Markdown row per run; nothing is written into the run directories.
"""

from __future__ import annotations

import argparse

import torch

from harl.experiments.evaluation import check_run, rebuilt_runner


class CriticGreedyActor:
    """Agent ``agent_id``'s arg-max over its available actions of the twin heads' mean utility."""

    def __init__(self, actor, critic_net, agent_id: int):
        self.actor, self.heads, self.agent_id = actor, critic_net.heads, agent_id

    @torch.no_grad()
    def get_actions(self, obs, available_actions=None, explore: bool = False) -> torch.Tensor:
        obs = torch.as_tensor(obs, dtype=torch.float32)
        utility = torch.stack([head.agent_utilities(obs, self.agent_id) for head in self.heads]).mean(0)
        if available_actions is not None:
            available = torch.as_tensor(available_actions, dtype=torch.float32)
            utility = utility.masked_fill(available == 0, float("-inf"))
        return utility.argmax(-1, keepdim=True)

    def __getattr__(self, name):  # everything else (e.g. prep_rollout) is the actor's
        return getattr(self.actor, name)


def main() -> None:
    """Evaluate each run with its actors, then greedily on its critic; print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--eval_episodes", type=int, default=200)
    parser.add_argument("--eval_seed", type=int, default=12345)
    cli = parser.parse_args()
    for run_dir in cli.run_dirs:
        check_run(run_dir, cli.eval_episodes, cli.eval_seed)
    print("| run | actors: win rate / return | critic-greedy: win rate / return |")
    print("|---|---|---|")
    for run_dir in cli.run_dirs:
        results = []
        for greedy in (False, True):  # a fresh runner each: both evaluations meet the same start states
            with rebuilt_runner(run_dir, cli.eval_episodes, cli.eval_seed) as runner:
                net = runner.critic.critic
                form = getattr(net, "form", None)
                if form != "additive_local":
                    raise SystemExit(f"{run_dir}: critic_form {form!r}; this control needs additive_local")
                if greedy:
                    runner.actor = [CriticGreedyActor(actor, net, i) for i, actor in enumerate(runner.actor)]
                results.append(runner.evaluate(None))
        cells = [f"{r['eval_win_rate']:.3f} / {r['eval_episode_return']:.2f}" for r in results]
        print(f"| {run_dir} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
