"""On-policy runner shared by the HA (HAPPO, HATRPO, HAA2C) and MA (MAPPO) variants.

One "episode" in HARL's sense is one rollout of ``episode_length`` steps in each of the
``n_rollout_threads`` environments followed by one training phase.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from harl.algorithms.actors import ALGO_REGISTRY
from harl.algorithms.actors.on_policy_base import normalize_advantages
from harl.algorithms.critics.v_critic import VCritic
from harl.common.buffers.on_policy_actor_buffer import OnPolicyActorBuffer
from harl.common.buffers.on_policy_critic_buffer_ep import OnPolicyCriticBufferEP
from harl.common.buffers.on_policy_critic_buffer_fp import OnPolicyCriticBufferFP
from harl.common.buffers.storage import as_stored, observation_storage_device
from harl.common.valuenorm import ValueNorm
from harl.models.policy_models.stacked_stochastic_policy import StackedStochasticPolicy
from harl.runners.base_runner import BaseRunner, check_model_dir, flatten_sections
from harl.utils.errors import ConfigError
from harl.utils.finite import blame
from harl.utils.logger import row_grid
from harl.utils.models_tools import to_numpy


class OnPolicyBaseRunner(BaseRunner):
    """Collect rollouts with every agent's actor and a centralised V critic; train per rollout.

    Subclasses implement :meth:`train_actors` (the HA or MA update scheme).
    """

    @classmethod
    def check_config(cls, algo_args: dict[str, Any], env_args: dict[str, Any]) -> None:
        super().check_config(algo_args, env_args)
        flat = flatten_sections(algo_args)
        episode_length, threads = int(flat["episode_length"]), int(flat["n_rollout_threads"])
        if flat["use_recurrent_policy"] and episode_length % int(flat["data_chunk_length"]):
            # recurrent mini-batches cut each rollout into whole chunks of data_chunk_length steps
            raise ConfigError(
                f"episode_length ({episode_length}) must be a multiple of data_chunk_length "
                f"({flat['data_chunk_length']}) with use_recurrent_policy True; change either"
            )
        if int(flat["num_env_steps"]) < episode_length * threads:
            raise ConfigError(
                f"num_env_steps={flat['num_env_steps']} is smaller than one rollout "
                f"(episode_length * n_rollout_threads = {episode_length * threads}); "
                "raise --num_env_steps or lower --episode_length / --n_rollout_threads"
            )

    def __init__(self, args: dict[str, Any], algo_args: dict[str, Any], env_args: dict[str, Any]):
        super().__init__(args, algo_args, env_args)
        flat = self.flat_args
        self.episode_length = int(flat["episode_length"])
        self.use_recurrent = bool(flat["use_recurrent_policy"] or flat["use_naive_recurrent_policy"])
        self.action_aggregation = flat["action_aggregation"]
        envs = self.envs
        self.actor = self.build_actors(ALGO_REGISTRY[args["algo"]])
        # observations handed out as tensors stay tensors, on the training device
        obs_device = observation_storage_device(envs, self.device)
        self.actor_buffer = [
            OnPolicyActorBuffer(flat, envs.observation_spaces[i], envs.action_spaces[i], obs_device)
            for i in range(self.num_agents)
        ]
        share_space = envs.share_observation_spaces[0]
        self.critic = VCritic(flat, share_space, device=self.device)
        if self.state_type == "EP":
            self.critic_buffer = OnPolicyCriticBufferEP(flat, share_space, obs_device)
        else:
            self.critic_buffer = OnPolicyCriticBufferFP(flat, share_space, self.num_agents, obs_device)
        self.value_normalizer = ValueNorm(1, device=self.device) if flat["use_valuenorm"] else None
        # agents whose policies have the same structure act in one batched call per step
        groups: dict[tuple, list[int]] = {}
        for agent_id, actor in enumerate(self.actor):
            groups.setdefault(actor.actor.stack_key(), []).append(agent_id)
        self.acting_groups = list(groups.values())
        self.stacked_actors: list[StackedStochasticPolicy | None] = []
        self.episodes = self.num_env_steps // self.episode_length // self.n_rollout_threads
        self.final_total_steps = self.episodes * self.episode_length * self.n_rollout_threads
        if flat["model_dir"]:
            self.restore_weights(check_model_dir(flat["model_dir"]))

    # ----------------------------------------------------------------- main loop
    def train_loop(self, progress: dict[str, Any] | None) -> None:
        """Train for ``num_env_steps`` environment steps, logging, evaluating and checkpointing."""
        start_episode = 0 if progress is None else int(progress["episode"]) + 1
        train_cfg = self.algo_args["train"]
        log_interval = int(train_cfg["log_interval"])
        eval_interval = int(train_cfg["eval_interval"])
        checkpoint_interval = int(train_cfg["checkpoint_interval"])
        steps_per_episode = self.episode_length * self.n_rollout_threads
        # a progress.csv row at least every 1/PROGRESS_ROWS of the budget, whatever log_interval says
        row_interval = row_grid(self.episodes)
        run_logger = self.start_logger()
        if run_logger.phase is None:  # nothing to compile
            run_logger.announce("collecting the first rollout")
        self.warmup()
        for episode in range(start_episode, self.episodes):
            if self.flat_args["use_linear_lr_decay"]:
                for actor in self.unique_actors():
                    actor.lr_decay(episode, self.episodes)
                self.critic.lr_decay(episode, self.episodes)

            self.prep_rollout()
            for step in range(self.episode_length):
                values, actions, action_log_probs, rnn_states, rnn_states_critic = self.collect(step)
                result = self.checked_step(actions)
                finished = self.train_tracker.update(result.rewards, result.infos)
                run_logger.add_train_episodes(finished)
                self.insert(result, values, actions, action_log_probs, rnn_states, rnn_states_critic)
            self.total_steps = (episode + 1) * steps_per_episode
            is_last = episode == self.episodes - 1
            evaluates = self.eval_envs is not None and (episode % eval_interval == 0 or is_last)
            if episode == start_episode:  # still no rate: the display says what comes next
                run_logger.advance(
                    self.total_steps, "first update" + (" and evaluation" if evaluates else ""), mark=False
                )
            self.compute()
            self.prep_training()
            actor_infos, critic_info = self.train()
            self.after_update()

            row: dict[str, float] = {}
            if evaluates:
                row.update(self.evaluate())
            if episode % log_interval == 0 or is_last or row or (episode + 1) % row_interval == 0:
                run_logger.log_row(self.total_steps, row=row)
                run_logger.log_scalars(self.train_scalars(actor_infos, critic_info), self.total_steps)
            saved = (episode + 1) % checkpoint_interval == 0 or is_last
            if saved:
                self.save_checkpoint({"episode": episode})
            # one mark per iteration, after its evaluation and checkpoint: the training rate
            # starts after the first one, which compiles what there is to compile
            run_logger.advance(self.total_steps)
            self.stop_if_requested({"episode": episode}, saved)
        self.save_model_weights(self.models_dir)

    # ----------------------------------------------------------------- rollout
    def warmup(self) -> None:
        """Reset the environments and store the first observations in the buffers."""
        obs, share_obs, available_actions = self.envs.reset()
        for agent_id in range(self.num_agents):
            buffer = self.actor_buffer[agent_id]
            buffer.obs[0] = as_stored(obs[agent_id], buffer.obs)
            buffer.rnn_states[0] = 0.0
            buffer.masks[0] = 1.0
            if available_actions[agent_id] is not None:
                buffer.available_actions[0] = available_actions[agent_id]
        cb = self.critic_buffer
        cb.share_obs[0] = as_stored(share_obs[:, 0] if self.state_type == "EP" else share_obs, cb.share_obs)
        cb.rnn_states_critic[0] = 0.0
        cb.masks[0] = 1.0
        cb.bad_masks[0] = 1.0

    def stack_actors(self) -> None:
        """Stacked copies of the current policies for acting; call after they change."""
        self.stacked_actors = [
            StackedStochasticPolicy([self.actor[i].actor for i in ids]) if len(ids) > 1 else None
            for ids in self.acting_groups
        ]

    def act_all(self, obs, rnn_states, masks, available_actions, deterministic: bool = False):
        """Every agent's actions, log-probs and next rnn states (numpy, one entry per agent):
        each group of same-structure policies in one batched call.

        Args: per agent ``obs (E, d_i)`` (numpy, or tensors from an environment that hands them
        out as tensors), ``rnn_states (E, R, H)``, ``masks (E, 1)`` and ``available_actions (E, n_i)``
        or None.
        """
        actions, log_probs, next_states = [None] * self.num_agents, [None] * self.num_agents, [None] * self.num_agents
        for ids, stacked in zip(self.acting_groups, self.stacked_actors):
            if stacked is None:
                (i,) = ids
                out = self.actor[i].actor(obs[i], rnn_states[i], masks[i], available_actions[i], deterministic)
                out = [x.unsqueeze(0) for x in out]
            else:

                def stack(xs):
                    if isinstance(xs[ids[0]], torch.Tensor):
                        return torch.stack([xs[i] for i in ids]).to(self.device, torch.float32)
                    return torch.as_tensor(np.stack([xs[i] for i in ids]), dtype=torch.float32, device=self.device)

                avail = None if available_actions[ids[0]] is None else stack(available_actions)
                out = stacked(stack(obs), stack(rnn_states), stack(masks), avail, deterministic)
            out = [to_numpy(x) for x in out]  # one transfer per quantity; agents get views
            for g, i in enumerate(ids):
                actions[i], log_probs[i], next_states[i] = (x[g] for x in out)
        return actions, log_probs, next_states

    @torch.no_grad()
    def collect(self, step: int):
        """Sample every agent's action and the critic's value for rollout step ``step``."""
        buffers = self.actor_buffer
        actions, action_log_probs, rnn_states = self.act_all(
            [b.obs[step] for b in buffers],
            [b.rnn_states[step] for b in buffers],
            [b.masks[step] for b in buffers],
            [None if b.available_actions is None else b.available_actions[step] for b in buffers],
        )
        cb = self.critic_buffer
        if self.state_type == "EP":
            value, rnn_state_critic = self.critic.get_values(
                cb.share_obs[step], cb.rnn_states_critic[step], cb.masks[step]
            )
            values, rnn_states_critic = to_numpy(value), to_numpy(rnn_state_critic)
        else:
            value, rnn_state_critic = self.critic.get_values(
                _merge_agents(cb.share_obs[step]),
                _merge_agents(cb.rnn_states_critic[step]),
                _merge_agents(cb.masks[step]),
            )
            lead = (self.n_rollout_threads, self.num_agents)
            values = to_numpy(value).reshape(*lead, 1)
            rnn_states_critic = to_numpy(rnn_state_critic).reshape(*lead, *cb.rnn_states_critic.shape[3:])
        return values, actions, action_log_probs, rnn_states, rnn_states_critic

    def insert(self, result, values, actions, action_log_probs, rnn_states, rnn_states_critic) -> None:
        """Store one environment step; reset recurrent states where an episode ended."""
        dones = result.dones  # (E, N) per agent
        dones_env = np.array([info["episode_done"] for info in result.infos])
        bad_transition = np.array([info["bad_transition"] for info in result.infos])
        n_envs = self.n_rollout_threads
        masks = np.ones((n_envs, self.num_agents, 1), np.float32)
        masks[dones_env] = 0.0
        # a dead agent's steps do not train its policy, but every agent is active again after a reset
        active_masks = np.ones((n_envs, self.num_agents, 1), np.float32)
        active_masks[dones] = 0.0
        active_masks[dones_env] = 1.0
        for agent_id in range(self.num_agents):
            rnn_states[agent_id][dones_env] = 0.0
            self.actor_buffer[agent_id].insert(
                result.obs[agent_id],
                rnn_states[agent_id],
                actions[agent_id],
                action_log_probs[agent_id],
                masks[:, agent_id],
                active_masks[:, agent_id],
                result.available_actions[agent_id],
            )
        rnn_states_critic[dones_env] = 0.0
        bad_masks = np.where(bad_transition, 0.0, 1.0).astype(np.float32)[:, None]
        if self.state_type == "EP":
            self.critic_buffer.insert(
                result.share_obs[:, 0],
                rnn_states_critic,
                values,
                result.rewards[:, :1],
                masks[:, 0],
                bad_masks,
            )
        else:
            bad_masks_fp = np.repeat(bad_masks[:, None], self.num_agents, axis=1)
            self.critic_buffer.insert(
                result.share_obs,
                rnn_states_critic,
                values,
                result.rewards[..., None],
                masks,
                bad_masks_fp,
            )

    @torch.no_grad()
    def compute(self) -> None:
        """Bootstrap the value of the state after the rollout and compute GAE returns."""
        cb = self.critic_buffer
        if self.state_type == "EP":
            next_value, _ = self.critic.get_values(cb.share_obs[-1], cb.rnn_states_critic[-1], cb.masks[-1])
            next_value = to_numpy(next_value)
        else:
            next_value, _ = self.critic.get_values(
                _merge_agents(cb.share_obs[-1]),
                _merge_agents(cb.rnn_states_critic[-1]),
                _merge_agents(cb.masks[-1]),
            )
            next_value = to_numpy(next_value).reshape(self.n_rollout_threads, self.num_agents, 1)
        cb.compute_returns(next_value, self.value_normalizer)

    # ----------------------------------------------------------------- training
    def advantages(self) -> np.ndarray:
        """Advantages ``(T, E, 1)`` (EP) or ``(T, E, N, 1)`` (FP) from the GAE returns.

        EP advantages are standardised by each actor over its own active steps (HARL's
        convention); FP advantages are standardised here over every agent's active steps.
        """
        cb = self.critic_buffer
        value_preds = cb.value_preds[:-1]
        if self.value_normalizer is not None:
            value_preds = self.value_normalizer.denormalize(value_preds)
        advantages = cb.returns[:-1] - value_preds
        if self.state_type == "FP":
            active = np.stack([b.active_masks[:-1] for b in self.actor_buffer], axis=2)
            advantages = normalize_advantages(advantages, active)
        return advantages.astype(np.float32)

    def train(self) -> tuple[list[dict[str, float]], dict[str, float]]:
        """One training phase: actors by the subclass' scheme, then the critic."""
        actor_infos = self.train_actors(self.advantages())
        with blame("the critic"):
            critic_info = self.critic.train(self.critic_buffer, self.value_normalizer)
        return actor_infos, critic_info

    def train_actors(self, advantages: np.ndarray) -> list[dict[str, float]]:
        """Update the actors from normalised advantages; returns one info dict per agent."""
        raise NotImplementedError

    def agent_advantages(self, advantages: np.ndarray, agent_id: int) -> np.ndarray:
        """The slice of the advantages that trains ``agent_id``: shared (EP) or its own (FP)."""
        return advantages.copy() if self.state_type == "EP" else advantages[:, :, agent_id].copy()

    def after_update(self) -> None:
        """Carry the last step of the rollout over as the first step of the next one."""
        for buffer in self.actor_buffer:
            buffer.after_update()
        self.critic_buffer.after_update()

    # ----------------------------------------------------------------- helpers
    def prep_rollout(self) -> None:
        for actor in self.unique_actors():
            actor.prep_rollout()
        self.critic.prep_rollout()
        self.stack_actors()

    def prep_training(self) -> None:
        for actor in self.unique_actors():
            actor.prep_training()
        self.critic.prep_training()

    def train_scalars(self, actor_infos: list[dict[str, float]], critic_info: dict[str, float]) -> dict[str, float]:
        """TensorBoard diagnostics: per-agent actor info, critic info and the mean rollout reward."""
        scalars = {f"agent{i}/{k}": float(v) for i, info in enumerate(actor_infos) for k, v in info.items()}
        scalars.update({f"critic/{k}": float(v) for k, v in critic_info.items()})
        scalars["critic/average_step_rewards"] = self.critic_buffer.get_mean_rewards()
        return scalars

    # ----------------------------------------------------------------- evaluation
    def eval_policy_reset(self, n_envs: int) -> list[np.ndarray]:
        self.stack_actors()  # the policies changed since the rollout: training ran in between
        rnn_shape = self.actor_buffer[0].rnn_states.shape[2:]
        return [np.zeros((n_envs, *rnn_shape), np.float32) for _ in range(self.num_agents)]

    @torch.no_grad()
    def eval_actions(self, obs, available_actions, policy_state, episode_starts):
        masks = np.where(episode_starts, 0.0, 1.0).astype(np.float32)[:, None]
        actions, _, next_state = self.act_all(
            obs, policy_state, [masks] * self.num_agents, available_actions, deterministic=not self.eval_explore
        )
        return actions, next_state

    # ----------------------------------------------------------------- persistence
    def algorithm_state(self) -> dict[str, Any]:
        return {
            "actors": [
                {"actor": actor.actor.state_dict(), "optimizer": _optimizer_state(actor)}
                for actor in self.unique_actors()
            ],
            "critic": self.critic.critic.state_dict(),
            "critic_optimizer": self.critic.critic_optimizer.state_dict(),
            "value_normalizer": None if self.value_normalizer is None else self.value_normalizer.state_dict(),
        }

    def load_algorithm_state(self, state: dict[str, Any]) -> None:
        for actor, saved in zip(self.unique_actors(), state["actors"]):
            actor.actor.load_state_dict(saved["actor"])
            if saved["optimizer"] is not None:
                actor.actor_optimizer.load_state_dict(saved["optimizer"])
        self.critic.critic.load_state_dict(state["critic"])
        self.critic.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if self.value_normalizer is not None:
            self.value_normalizer.load_state_dict(state["value_normalizer"])

    def save_model_weights(self, directory: str) -> None:
        for agent_id, actor in enumerate(self.unique_actors()):
            torch.save(actor.actor.state_dict(), os.path.join(directory, f"actor_agent{agent_id}.pt"))
        torch.save(self.critic.critic.state_dict(), os.path.join(directory, "critic_agent.pt"))
        if self.value_normalizer is not None:
            torch.save(self.value_normalizer.state_dict(), os.path.join(directory, "value_normalizer.pt"))

    def restore_weights(self, model_dir: str) -> None:
        """Load HARL-style weight files from ``model_dir`` (the ``model_dir`` config key)."""
        for agent_id, actor in enumerate(self.unique_actors()):
            path = os.path.join(model_dir, f"actor_agent{agent_id}.pt")
            actor.actor.load_state_dict(torch.load(path, map_location=self.device))
        self.critic.critic.load_state_dict(
            torch.load(os.path.join(model_dir, "critic_agent.pt"), map_location=self.device)
        )
        norm_path = os.path.join(model_dir, "value_normalizer.pt")
        if self.value_normalizer is not None and os.path.exists(norm_path):
            self.value_normalizer.load_state_dict(torch.load(norm_path, map_location=self.device))


def _optimizer_state(actor) -> dict | None:
    optimizer = getattr(actor, "actor_optimizer", None)
    return None if optimizer is None else optimizer.state_dict()


def _merge_agents(x: np.ndarray) -> np.ndarray:
    """``(E, N, ...) -> (E * N, ...)`` so the critic scores every (env, agent) state in one pass."""
    return x.reshape(-1, *x.shape[2:])
