"""Issue 32, the 3m plateau: is the actor or the critic the limit? Evaluate a trained HAQO (or
HASAC) run on SMAX twice from the same evaluation seed: once with its actors (as
``examples/evaluate.py`` does), once acting greedily on its own critic.

With ``critic_form: additive_local`` the critic is ``Q(s, a) = v(s) + sum_i u(o_i, i)[a_i]``, so
the joint arg-max is every agent's own arg-max of ``u(o_i, i)`` over its available actions:
a decentralised policy that reads only the agent's observation, as the actor does. Its win rate
is what the critic's rankings are worth on their own. If the critic's greedy policy wins clearly
more than the actor, the actor lags its critic (the update, the trust region, the entropy term);
if it wins about as much, the critic is the limit. The utilities of the twin heads are averaged.
During the actors' evaluation each agent's action is also compared with its critic's arg-max, in
the states where it has more than one available action: how often they agree, and where they do
not, how much utility the actor's action gives up, as a share of the utility range over the
available actions (small: near-ties the critic hardly separates; large: the actor misses clear
preferences of its critic), and in how many of those states the twin heads' own arg-maxes differ
(there the actor's training target, the arg-max of ``min(Q1, Q2)`` with ``actor_q: min``, follows
whichever head is lower, not the mean this script compares with).

    python benchmarks/critic_greedy_eval.py results/smax/3m/haqo/EXP/seed-* --eval_episodes 200

Prints one Markdown row per run; nothing is written into the run directories.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from harl.experiments.evaluation import check_run, rebuilt_runner
from harl.utils.errors import ConfigError


class CriticGreedyActor:
    """Agent ``agent_id``'s arg-max over its available actions of the twin heads' mean utility."""

    def __init__(self, actor, critic_net, agent_id: int):
        self.actor, self.heads, self.agent_id = actor, critic_net.heads, agent_id

    @torch.no_grad()
    def head_utilities(self, obs, available_actions=None) -> torch.Tensor:
        """``(H, B, n)`` every head's utilities, ``-inf`` at the unavailable actions."""
        obs = torch.as_tensor(obs, dtype=torch.float32)
        utility = torch.stack([head.agent_utilities(obs, self.agent_id) for head in self.heads])
        if available_actions is not None:
            available = torch.as_tensor(available_actions, dtype=torch.float32)
            utility = utility.masked_fill(available == 0, float("-inf"))
        return utility

    def available_utilities(self, obs, available_actions=None) -> torch.Tensor:
        """``(B, n)`` the heads' mean utilities, ``-inf`` at the unavailable actions."""
        return self.head_utilities(obs, available_actions).mean(0)

    def get_actions(self, obs, available_actions=None, explore: bool = False) -> torch.Tensor:
        return self.available_utilities(obs, available_actions).argmax(-1, keepdim=True)

    def __getattr__(self, name):  # everything else (e.g. prep_rollout) is the actor's
        return getattr(self.actor, name)


@dataclass
class Agreement:
    """Tally of actor and critic arg-max over the states with a choice (module doc)."""

    states: int = 0
    agreeing: int = 0
    regret_share: float = 0.0  # summed over the disagreeing states
    heads_differ: int = 0  # states where the twin heads' arg-maxes differ
    agreeing_where_heads_differ: int = 0

    def row(self) -> str:
        """Agreement (states) | utility given up | heads differ: share, agreement there."""
        disagreeing = self.states - self.agreeing
        regret = f"{self.regret_share / disagreeing:.2f}" if disagreeing else "-"
        split = (
            f"{self.heads_differ / self.states:.3f}, {self.agreeing_where_heads_differ / max(self.heads_differ, 1):.3f}"
            if self.states
            else "-"
        )
        return f"{self.agreeing / max(self.states, 1):.3f} ({self.states:,} states) | {regret} | {split}"


class AgreementProbe(CriticGreedyActor):
    """Acts as the actor; tallies how its actions compare with the critic's arg-max."""

    def __init__(self, actor, critic_net, agent_id: int, tally: Agreement):
        super().__init__(actor, critic_net, agent_id)
        self.tally = tally

    def get_actions(self, obs, available_actions=None, explore: bool = False) -> torch.Tensor:
        actions = self.actor.get_actions(obs, available_actions, explore=explore)
        heads = self.head_utilities(obs, available_actions)
        utility = heads.mean(0)
        finite = torch.isfinite(utility)
        choice = finite.sum(-1) > 1
        best = utility.max(-1).values
        worst = utility.masked_fill(~finite, float("inf")).min(-1).values
        taken = utility.gather(-1, torch.as_tensor(actions).long().reshape(-1, 1)).squeeze(-1)
        disagree = choice & (taken < best)
        share = (best - taken) / (best - worst).clamp_min(1e-12)
        self.tally.states += int(choice.sum())
        self.tally.agreeing += int((choice & ~disagree).sum())
        self.tally.regret_share += float(share[disagree].sum())
        arg_maxes = heads.argmax(-1)  # (H, B)
        differ = choice & (arg_maxes != arg_maxes[:1]).any(0)
        self.tally.heads_differ += int(differ.sum())
        self.tally.agreeing_where_heads_differ += int((differ & ~disagree).sum())
        return actions


def additive_local_net(runner, run_dir: str):
    """The run's critic network; exits with a message unless its form is ``additive_local``
    (the only form whose joint arg-max is every agent's own)."""
    net = runner.critic.critic
    form = getattr(net, "form", None)
    if form != "additive_local":
        raise SystemExit(f"{run_dir}: critic_form {form!r}; this control needs additive_local")
    return net


def checked_runs(run_dirs, eval_episodes: int, eval_seed: int, overrides: tuple[str, ...] = ()) -> None:
    """:func:`check_run` on every run; a bad run or setting exits with its message, before any work."""
    try:
        for run_dir in run_dirs:
            check_run(run_dir, eval_episodes, eval_seed, overrides=overrides)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None


def main() -> None:
    """Evaluate each run with its actors, then greedily on its critic; print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--eval_episodes", type=int, default=200)
    parser.add_argument("--eval_seed", type=int, default=12345)
    cli = parser.parse_args()
    checked_runs(cli.run_dirs, cli.eval_episodes, cli.eval_seed)
    print(
        "| run | actors: win rate / return | critic-greedy: win rate / return | actor = critic arg-max "
        "| utility given up where not (share of range) "
        "| heads' arg-maxes differ: share of states, actor = arg-max there |"
    )
    print("|---|---|---|---|---|---|")
    for run_dir in cli.run_dirs:
        results, tally = [], Agreement()
        for greedy in (False, True):  # a fresh runner each: both evaluations meet the same start states
            with rebuilt_runner(run_dir, cli.eval_episodes, cli.eval_seed) as runner:
                net = additive_local_net(runner, run_dir)
                wrapper = CriticGreedyActor if greedy else lambda actor, net, i: AgreementProbe(actor, net, i, tally)
                runner.actor = [wrapper(actor, net, i) for i, actor in enumerate(runner.actor)]
                results.append(runner.evaluate(None))
        cells = [f"{r['eval_win_rate']:.3f} / {r['eval_episode_return']:.2f}" for r in results]
        print(f"| {run_dir} | {cells[0]} | {cells[1]} | {tally.row()} |", flush=True)


if __name__ == "__main__":
    main()
