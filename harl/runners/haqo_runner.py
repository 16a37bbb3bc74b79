"""HAQO on the off-policy heterogeneous-agent runner (docs/HAQO.md, "The algorithm as the code implements it").

The replay buffer, warm-up, counters, evaluation and checkpoints are the off-policy runner's;
the shared twin-Q critic is :class:`TwinContinuousQCritic`. What HAQO changes:

* behaviour actions (algorithm 3): each agent's best of ``behavior_candidates`` samples by
  ``min(Q1, Q2)`` with the other agents at their first candidate;
* TD target (algorithm 2): each agent's next action is the best of ``target_candidates`` samples by
  the target critics;
* actor round (algorithm 4), every ``policy_freq``-th critic update: every agent's candidates are
  drawn in one pass before the round, then the agents update one at a time with
  :func:`sequential_round`; with ``sequential: true`` the successors see actions re-sampled from
  their predecessors' freshly updated actors, with ``false`` every agent sees the pre-round
  actions (each agent's first candidate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces

from harl.algorithms.actors.haqo import sample_candidates, select_joint_actions
from harl.common.sequential_update import sequential_round, update_order
from harl.runners.off_policy_base_runner import OffPolicyBaseRunner
from harl.utils.errors import ConfigError
from harl.utils.finite import blame
from harl.utils.models_tools import to_numpy, to_tensor

# Per-agent diagnostics that also get a progress.csv column (docs/HAQO.md, algorithm 6); the rest
# (losses of every part, timings) go to TensorBoard.
CSV_AGENT_DIAGNOSTICS = (
    "loss_qv",
    "loss_ent",
    "weight_nonzero",
    "kl_raw",
    "kl",
    "kl_max",
    "ls_backtracks",
    "ls_reverted",
    "action_entropy",
    "candidate_spread",
)


@dataclass(frozen=True)
class CandidateSettings:
    """How many candidates HAQO's runner draws where (read once from the config)."""

    behavior: int  # per agent and environment step, the best by the online critic is executed
    target: int  # per agent and next state of a TD target, the best by the target critic is used
    record_chains: bool  # the actor round keeps the sampling chains the KL line search measures


class HAQORunner(OffPolicyBaseRunner):
    """Collect with Q-selected diffusion candidates; train the twin critic, then one HA round."""

    def __init__(self, args, algo_args, env_args):
        super().__init__(args, algo_args, env_args)
        self.sequential = bool(self.flat_args["sequential"])
        flat = self.flat_args
        self.actor_q: str = flat["actor_q"]
        self.candidates = CandidateSettings(
            int(flat["behavior_candidates"]), int(flat["target_candidates"]), self.actor[0].line_search
        )

    def build_actors(self, actor_cls: type) -> list:
        # before anything is written (the run directory is made by run()): the categorical
        # control has no Box counterpart, its Box analogue is actor: gaussian
        if self.flat_args["actor"] == "categorical":
            boxes = [i for i, space in enumerate(self.envs.action_spaces) if not isinstance(space, spaces.Discrete)]
            if boxes:
                raise ConfigError(
                    f"actor 'categorical' needs Discrete actions (an exact categorical over them), but agent "
                    f"{boxes[0]} of {self.args['env']} {self.task_name} has {self.envs.action_spaces[boxes[0]]}; "
                    "use --actor diffusion or --actor gaussian, or a discrete task (e.g. smax, or "
                    "pettingzoo_mpe with --continuous_actions False)"
                )
        return super().build_actors(actor_cls)

    # ----------------------------------------------------------------- diagnostics
    def csv_diagnostic_names(self) -> tuple[str, ...]:
        return tuple(f"agent{i}/{k}" for i in range(self.num_agents) for k in CSV_AGENT_DIAGNOSTICS) + (
            "critic/critic_loss",
            "critic/q_mean",
            "time/sampling",
            "time/critic",
            "time/actor",
        )

    def track_max(self, key: str) -> bool:
        # the realised KL of the worst update in a logged window must stay below kl_threshold
        return key.endswith("/kl")

    # ----------------------------------------------------------------- acting
    @torch.no_grad()
    def _q_fn(self, share_obs, obs, target: bool = False, combine: str = "min"):
        """``min(Q1, Q2)`` (``combine="mean"``: their mean) at the given states (and every agent's
        observations, which critic_form additive_local reads), as the function of joint actions
        HAQO expects (HAQO weights actions by Q and never differentiates it)."""
        return self.critic.min_q_fn(to_tensor(share_obs, self.device), obs, target, combine)

    def _critic_states(self, share_obs: np.ndarray) -> np.ndarray:
        """The critic's state of a vectorised step: EP one per env, FP one per (env, agent)."""
        return share_obs[:, 0] if self.state_type == "EP" else share_obs

    @torch.no_grad()
    def behavior_actions(self, obs, share_obs, available_actions) -> list[np.ndarray]:
        joint = select_joint_actions(
            self.actor,
            obs,
            available_actions,
            self.candidates.behavior,
            self._q_fn(self._critic_states(share_obs), obs),
        )
        return [to_numpy(action) for action in joint.env]

    # ----------------------------------------------------------------- training
    def train(self) -> dict[str, float]:
        """One update: twin critic on K_t-candidate targets, then, every ``policy_freq`` updates,
        one actor round."""
        self.total_it += 1
        batch = self.buffer.sample().to(self.device)
        start = time.perf_counter()
        next_actions = select_joint_actions(
            self.actor,
            batch.next_obs,
            batch.next_available_actions,
            self.candidates.target,
            self._q_fn(batch.next_share_obs, batch.next_obs, target=True),
        ).critic
        with blame("the critic"):
            infos = {f"critic/{k}": v for k, v in self.critic.train(batch, next_actions).items()}
        self.critic.soft_update()
        infos["time/critic"] = time.perf_counter() - start
        if self.total_it % self.policy_freq == 0:  # delayed actor rounds (policy_freq)
            infos.update(self.actor_round(batch))
        return infos

    def actor_round(self, batch) -> dict[str, float]:
        """One HA round of the actors on ``batch`` against the current critic (algorithm 4)."""
        start = time.perf_counter()
        # every agent's samples from its actor before the round, in one pass: the actors only
        # change at their own update, so these are each agent's training candidates, and their
        # first ones are the pre-round joint action
        drawn = sample_candidates(
            self.actor,
            batch.obs,
            [actor.round_samples for actor in self.actor],
            batch.available_actions,
            record=self.candidates.record_chains,
        )
        joint = [
            actor.actor.codec.to_critic(sample.x[0], actor.as_tensor(avail))
            for actor, sample, avail in zip(self.actor, drawn, batch.available_actions)
        ]
        drawn_time = time.perf_counter() - start
        q_fn = self._q_fn(batch.share_obs, batch.obs, combine=self.actor_q)

        def update_agent(agent_id: int, joint_actions) -> dict[str, float]:
            with blame(f"agent {agent_id}"):
                return self.actor[agent_id].train(
                    batch.obs[agent_id],
                    joint_actions,
                    agent_id,
                    q_fn,
                    batch.available_actions[agent_id],
                    batch.valid_transitions[:, agent_id],
                    drawn[agent_id],
                )

        order = update_order(self.num_agents, self.fixed_order)

        def resample(agent_id: int):
            if agent_id == order[-1]:  # nobody is updated after the last agent: no fresh action needed
                return joint[agent_id]
            return self.actor[agent_id].sample_critic_action(batch.obs[agent_id], batch.available_actions[agent_id])

        agent_infos = sequential_round(order, joint, update_agent, resample if self.sequential else None)
        infos = {f"agent{agent_id}/{k}": v for agent_id, info in agent_infos.items() for k, v in info.items()}
        infos["time/actor"] = time.perf_counter() - start
        infos["time/sampling"] = drawn_time + sum(info["time_sampling"] for info in agent_infos.values())
        return infos
