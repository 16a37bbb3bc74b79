"""Off-policy runner shared by the HA (HASAC, HADDPG, HATD3) and MA (MADDPG, MATD3) variants.

Counting follows HARL: ``num_env_steps`` includes the warm-up; ``train_interval`` and
``eval_interval`` are in vectorised steps (each ``n_rollout_threads`` env steps);
``update_per_train * train_interval`` gradient updates follow every ``train_interval`` steps.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from harl.algorithms.actors import ALGO_REGISTRY
from harl.algorithms.critics import CRITIC_REGISTRY
from harl.common.buffers.off_policy_buffer_ep import OffPolicyBufferEP
from harl.common.buffers.off_policy_buffer_fp import OffPolicyBufferFP
from harl.common.buffers.storage import observation_storage_device
from harl.runners.base_runner import BaseRunner, check_model_dir
from harl.utils.errors import ConfigError
from harl.utils.logger import ScalarWindow
from harl.utils.models_tools import to_numpy

logger = logging.getLogger(__name__)


def random_actions(
    action_spaces: list[spaces.Space], available_actions: list[np.ndarray | None], n_envs: int
) -> list[np.ndarray]:
    """Uniform random actions in env format: Box uniform in its bounds, Discrete uniform over
    the available actions (the arg-max of random scores over the allowed entries)."""
    actions = []
    for space, available in zip(action_spaces, available_actions):
        if isinstance(space, spaces.Discrete):
            scores = np.random.random_sample((n_envs, int(space.n)))
            if available is not None:
                scores = np.where(available > 0, scores, -1.0)
            actions.append(scores.argmax(axis=1)[:, None])
        else:
            low, high = space.low, space.high
            actions.append((low + (high - low) * np.random.random_sample((n_envs, *space.shape))).astype(np.float32))
    return actions


def check_buffer_fits(nbytes: int, buffer_size: int, num_env_steps: int) -> None:
    """Refuse a replay buffer that would outgrow this machine's memory during the run.

    The arrays are allocated lazily, so an oversized buffer would otherwise only fail once it
    fills, possibly hours in, with the process killed and the run lost.
    """
    if not hasattr(os, "sysconf") or "SC_PHYS_PAGES" not in os.sysconf_names:
        return  # no portable way to ask; the platform's own out-of-memory handling applies
    filled = nbytes * min(1.0, num_env_steps / buffer_size)
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if filled > 0.8 * physical:
        raise ConfigError(
            f"the replay buffer would grow to {filled / 2**30:.1f} GiB ({buffer_size:,} transitions of "
            f"{nbytes / buffer_size / 2**10:.1f} KiB) but this machine has {physical / 2**30:.1f} GiB of memory; "
            "lower --buffer_size (or use state_type EP, which stores one shared state per step instead of one "
            "per agent)"
        )


class OffPolicyBaseRunner(BaseRunner):
    """Replay-buffer training with per-agent actors and one centralised Q critic.

    Subclasses implement the training step (:meth:`train`).
    """

    @classmethod
    def check_config(cls, algo_args: dict[str, Any], env_args: dict[str, Any]) -> None:
        super().check_config(algo_args, env_args)
        train_cfg = algo_args["train"]
        threads = int(train_cfg["n_rollout_threads"])
        if int(train_cfg["num_env_steps"]) // threads <= int(train_cfg["warmup_steps"]) // threads:
            raise ConfigError(
                f"num_env_steps={train_cfg['num_env_steps']} leaves no training after warmup_steps="
                f"{train_cfg['warmup_steps']}; raise --num_env_steps or lower --warmup_steps"
            )

    def __init__(self, args: dict[str, Any], algo_args: dict[str, Any], env_args: dict[str, Any]):
        super().__init__(args, algo_args, env_args)
        flat = self.flat_args
        envs = self.envs
        self.actor = self.build_actors(ALGO_REGISTRY[args["algo"]])
        self.critic = CRITIC_REGISTRY[args["algo"]](
            flat,
            envs.share_observation_spaces[0],
            envs.action_spaces,
            self.num_agents,
            self.state_type,
            self.device,
            envs.observation_spaces,
        )
        buffer_cls = OffPolicyBufferEP if self.state_type == "EP" else OffPolicyBufferFP
        # observations handed out as tensors stay tensors, on the training device
        self.buffer = buffer_cls(
            flat,
            envs.share_observation_spaces[0],
            self.num_agents,
            envs.observation_spaces,
            envs.action_spaces,
            observation_storage_device(envs, self.device),
        )
        logger.info("Replay buffer: %d transitions, %.2f GB allocated", flat["buffer_size"], self.buffer.nbytes / 1e9)
        check_buffer_fits(self.buffer.nbytes, int(flat["buffer_size"]), self.num_env_steps)

        train_cfg = algo_args["train"]
        self.read_vector_step_schedule()
        self.warmup_vec_steps = int(train_cfg["warmup_steps"]) // self.n_rollout_threads
        self.total_it = 0
        # actor rounds every policy_freq-th critic update (TD3's delay; 1 where the key is absent)
        self.policy_freq: int = int(self.actor[0].policy_freq)
        self.diagnostics = ScalarWindow(track_max=self.track_max)
        if flat["model_dir"]:
            self.restore_weights(check_model_dir(flat["model_dir"]))

    # ----------------------------------------------------------------- main loop
    def train_loop(self, progress: dict[str, Any] | None) -> None:
        """Warm up with random actions, then alternate collection and training."""
        start = 0 if progress is None else int(progress["vec_step"])
        if start < self.warmup_vec_steps:  # before the progress bar, which a log line would break
            logger.info(
                "Warm-up: %d env steps of uniformly random actions fill the replay buffer before training starts",
                self.warmup_vec_steps * self.n_rollout_threads,
            )
        run_logger = self.start_logger()
        obs, share_obs, available_actions = self.envs.reset()
        for vec_step in range(start + 1, self.total_vec_steps + 1):
            warming_up = vec_step <= self.warmup_vec_steps
            if vec_step == self.warmup_vec_steps + 1:
                logger.info("Warm-up done at %d env steps; training", self.total_steps)
            if warming_up:
                actions = random_actions(self.envs.action_spaces, available_actions, self.n_rollout_threads)
            else:
                actions = self.behavior_actions(obs, share_obs, available_actions)
            result = self.checked_step(actions)
            run_logger.add_train_episodes(self.train_tracker.update(result.rewards, result.infos))
            self.buffer.insert(share_obs, obs, actions, available_actions, result)
            obs, share_obs, available_actions = result.obs, result.share_obs, result.available_actions
            self.total_steps = vec_step * self.n_rollout_threads

            train_step = vec_step - self.warmup_vec_steps
            trained = not warming_up and train_step % self.train_interval == 0
            if trained:
                if self.flat_args["use_linear_lr_decay"]:
                    self.lr_decay(train_step, self.total_vec_steps - self.warmup_vec_steps)
                for _ in range(self.updates_per_train):
                    if self.stop_signal is not None:
                        break  # a training phase can take minutes; the scheduler's grace period is shorter
                    self.diagnostics.add(self.train())
            # the training rate (and ETA) counts whole cycles of collection and updates, from
            # the end of the first training phase: neither warm-up nor compilation is in it
            phase = (
                f"warm-up {self.total_steps:,}/{self.warmup_vec_steps * self.n_rollout_threads:,} random steps"
                if warming_up
                else None
            )
            run_logger.advance(self.total_steps, phase, mark=trained)
            self.finish_vector_step(vec_step, {"vec_step": vec_step, "total_it": self.total_it})
        self.save_model_weights(self.models_dir)

    def track_max(self, key: str) -> bool:
        """Diagnostics whose window maximum is logged beside the mean (default: none)."""
        return False

    # ----------------------------------------------------------------- acting
    @torch.no_grad()
    def behavior_actions(self, obs, share_obs, available_actions) -> list[np.ndarray]:
        """Exploratory actions of every agent for data collection (env format)."""
        return [
            to_numpy(self.actor[i].get_actions(obs[i], available_actions[i], explore=True))
            for i in range(self.num_agents)
        ]

    def eval_policy_reset(self, n_envs: int) -> None:
        return None

    @torch.no_grad()
    def eval_actions(self, obs, available_actions, policy_state, episode_starts):
        actions = [
            to_numpy(self.actor[i].get_actions(obs[i], available_actions[i], explore=self.eval_explore))
            for i in range(self.num_agents)
        ]
        return actions, None

    # ----------------------------------------------------------------- training
    def train(self) -> dict[str, float]:
        """One gradient update of the algorithm on a replay batch: the family's training step
        (:class:`~harl.runners.off_policy_actor_critic_runner.OffPolicyActorCriticRunner` for
        HASAC, HADDPG, HATD3, MADDPG, MATD3; :class:`~harl.runners.haqo_runner.HAQORunner`).

        Returns:
            diagnostics, ``critic/<name>`` and ``agent<i>/<name>``.
        """
        raise NotImplementedError

    def lr_decay(self, step: int, steps: int) -> None:
        for actor in self.unique_actors():
            actor.lr_decay(step, steps)
        self.critic.lr_decay(step, steps)

    # ----------------------------------------------------------------- persistence
    def algorithm_state(self) -> dict[str, Any]:
        return {
            "actors": [actor.state_dict() for actor in self.unique_actors()],
            "critic": self.critic.state_dict(),
            "buffer": self.buffer.state_dict(),
            "total_it": self.total_it,
        }

    def load_algorithm_state(self, state: dict[str, Any]) -> None:
        for actor, saved in zip(self.unique_actors(), state["actors"]):
            actor.load_state_dict(saved)
        self.critic.load_state_dict(state["critic"])
        self.buffer.load_state_dict(state["buffer"])
        self.total_it = int(state["total_it"])
        logger.info("Replay buffer restored from the checkpoint: %d transitions", len(self.buffer))

    def save_model_weights(self, directory: str) -> None:
        for agent_id, actor in enumerate(self.unique_actors()):
            actor.save(directory, agent_id)
        self.critic.save(directory)

    def restore_weights(self, model_dir: str) -> None:
        """Load HARL-style weight files from ``model_dir`` (the ``model_dir`` config key)."""
        for agent_id, actor in enumerate(self.unique_actors()):
            actor.restore(model_dir, agent_id)
        self.critic.restore(model_dir)
