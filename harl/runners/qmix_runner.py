"""Runner of QMIX and VDN: epsilon-greedy recurrent acting over ``n_rollout_threads``
environments, whole episodes into an episode replay buffer, updates on sampled episodes.

Counting follows the off-policy runners: ``num_env_steps`` in env steps, ``eval_interval`` in
vectorised steps. Updates come one per ``episodes_per_update`` finished episodes (pymarl2's rate,
which keeps the learner's share of the time the same on maps of long and short battles) or, with
``episodes_per_update`` 0, ``update_per_train * train_interval`` of them every ``train_interval``
vectorised steps; training starts once the buffer holds ``batch_episodes`` episodes. Epsilon is a
function of the env step, so a resumed run continues its schedule where it stopped.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from harl.algorithms.qmix import QMIX
from harl.common.buffers.episode_buffer import EpisodeReplayBuffer
from harl.runners.base_runner import BaseRunner, check_model_dir
from harl.runners.off_policy_base_runner import check_buffer_fits
from harl.utils.checkpoint import atomic_torch_save
from harl.utils.errors import ConfigError
from harl.utils.finite import blame
from harl.utils.logger import ScalarWindow

logger = logging.getLogger(__name__)

CSV_DIAGNOSTICS = ("train/loss", "train/q_taken_mean", "train/target_mean", "train/epsilon")


def linear_epsilon(step: int, start: float, finish: float, anneal_steps: int) -> float:
    """``start`` annealed linearly to ``finish`` over the first ``anneal_steps`` env steps."""
    if anneal_steps <= 0:
        return finish
    return start + (finish - start) * min(1.0, step / anneal_steps)


class QMIXRunner(BaseRunner):
    """Trains :class:`harl.algorithms.qmix.QMIX` (``--algo qmix`` or ``--algo vdn``)."""

    @classmethod
    def check_config(cls, algo_args: dict[str, Any], env_args: dict[str, Any]) -> None:
        super().check_config(algo_args, env_args)
        if env_args.get("state_type", "EP") != "EP":
            raise ConfigError("QMIX and VDN mix on the global state: run with --state_type EP")

    def __init__(self, args: dict[str, Any], algo_args: dict[str, Any], env_args: dict[str, Any]):
        super().__init__(args, algo_args, env_args)
        envs, flat = self.envs, self.flat_args
        boxes = [i for i, space in enumerate(envs.action_spaces) if not isinstance(space, spaces.Discrete)]
        if boxes:
            raise ConfigError(
                f"{args['algo']} needs Discrete actions (it picks an arg-max over them), but agent {boxes[0]} of "
                f"{args['env']} {self.task_name} has {envs.action_spaces[boxes[0]]}; use a discrete task "
                "(e.g. smax, or pettingzoo_mpe with continuous_actions False) or a continuous-action algorithm"
            )
        self.obs_dims = [int(space.shape[0]) for space in envs.observation_spaces]
        self.action_counts = [int(space.n) for space in envs.action_spaces]
        self.obs_dim, self.n_actions = max(self.obs_dims), max(self.action_counts)
        state_dim = int(envs.share_observation_spaces[0].shape[0])
        longest = envs.episode_limit
        if longest is not None and int(flat["buffer_size"]) < longest + 1:
            raise ConfigError(
                f"buffer_size {flat['buffer_size']} cannot hold one whole episode of {args['env']} {self.task_name} "
                f"(up to {longest} steps, {longest + 1} rows with the final observation): raise --buffer_size"
            )
        self.learner = QMIX(flat, self.num_agents, self.obs_dim, self.n_actions, state_dim, self.device)
        self.buffer = EpisodeReplayBuffer(
            int(flat["buffer_size"]), self.n_rollout_threads, self.num_agents, self.obs_dim, state_dim, self.n_actions
        )
        logger.info("Episode replay buffer: %d steps, %.2f GB allocated", flat["buffer_size"], self.buffer.nbytes / 1e9)
        check_buffer_fits(self.buffer.nbytes, int(flat["buffer_size"]), self.num_env_steps)

        self.read_vector_step_schedule()
        self.batch_episodes = int(flat["batch_episodes"])
        self.episodes_per_update = int(flat["episodes_per_update"])
        self.epsilon_args = (
            float(flat["epsilon_start"]),
            float(flat["epsilon_finish"]),
            int(flat["epsilon_anneal_steps"]),
        )
        self.diagnostics = ScalarWindow()
        if flat["model_dir"]:
            self.restore_weights(check_model_dir(flat["model_dir"]))

    # ----------------------------------------------------------------- env <-> tensors
    def _padded(self, obs: list[np.ndarray], available: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        """Per-agent observations and availabilities as ``(E, N, d)`` and ``(E, N, n)`` bool:
        smaller observations zero-padded, actions beyond an agent's count unavailable, a
        missing mask (all available) filled in."""
        E = obs[0].shape[0]
        padded_obs = np.zeros((E, self.num_agents, self.obs_dim), np.float32)
        padded_avail = np.zeros((E, self.num_agents, self.n_actions), np.bool_)
        for i, (o, a) in enumerate(zip(obs, available)):
            padded_obs[:, i, : self.obs_dims[i]] = o
            padded_avail[:, i, : self.action_counts[i]] = True if a is None else a > 0
        return padded_obs, padded_avail

    def updates_due(self, vec_step: int, finished: int) -> int:
        """Gradient updates owed after vectorised step ``vec_step`` that finished ``finished``
        episodes; with ``episodes_per_update`` the remainder carries over in
        ``self.pending_episodes``."""
        if self.episodes_per_update == 0:
            return self.updates_per_train if vec_step % self.train_interval == 0 else 0
        self.pending_episodes += finished
        due, self.pending_episodes = divmod(self.pending_episodes, self.episodes_per_update)
        return due

    def epsilon(self) -> float:
        return linear_epsilon(self.total_steps, *self.epsilon_args)

    def _act(
        self, obs: np.ndarray, avail: np.ndarray, last: np.ndarray, hidden: torch.Tensor, epsilon: float
    ) -> tuple[np.ndarray, torch.Tensor]:
        actions, hidden = self.learner.act(
            torch.from_numpy(obs).to(self.device),
            torch.from_numpy(avail).to(self.device),
            torch.from_numpy(last).to(self.device),
            hidden,
            epsilon,
        )
        return actions.cpu().numpy(), hidden

    def _reset_where(self, done: np.ndarray, last: np.ndarray, hidden: torch.Tensor) -> torch.Tensor:
        """Start fresh recurrent states and last actions in the environments that reset."""
        if done.any():
            last[done] = -1
            keep = torch.from_numpy(~np.repeat(done, self.num_agents)).to(self.device)
            hidden = hidden * keep.unsqueeze(-1)
        return hidden

    # ----------------------------------------------------------------- main loop
    def train_loop(self, progress: dict[str, Any] | None) -> None:
        start = 0 if progress is None else int(progress["vec_step"])
        self.pending_episodes = 0 if progress is None else int(progress.get("pending_episodes", 0))
        run_logger = self.start_logger()
        E = self.n_rollout_threads
        obs_list, share_obs, avail_list = self.envs.reset()
        obs, avail = self._padded(obs_list, avail_list)
        hidden = self.learner.initial_state(E)
        last = np.full((E, self.num_agents), -1, dtype=np.int64)
        for vec_step in range(start + 1, self.total_vec_steps + 1):
            epsilon = self.epsilon()
            actions, hidden = self._act(obs, avail, last, hidden, epsilon)
            result = self.checked_step([actions[:, i : i + 1] for i in range(self.num_agents)])
            run_logger.add_train_episodes(self.train_tracker.update(result.rewards, result.infos))
            ended = np.array([info["episode_done"] for info in result.infos])
            truncated = np.array([bool(info.get("bad_transition", False)) for info in result.infos])
            final = {}
            for e in np.flatnonzero(ended):
                info = result.infos[e]
                final_obs, final_avail = self._padded(
                    [o[None] for o in info["final_obs"]],
                    [None if a is None else a[None] for a in info["final_available_actions"]],
                )
                final[int(e)] = (final_obs[0], info["final_share_obs"][0], final_avail[0])
            self.buffer.add_step(
                obs,
                share_obs[:, 0],
                avail,
                actions,
                result.rewards.mean(axis=1),
                (ended & ~truncated).astype(np.float32),
                ended,
                final,
            )
            last = actions.copy()
            hidden = self._reset_where(ended, last, hidden)
            obs, avail = self._padded(result.obs, result.available_actions)
            share_obs = result.share_obs
            self.total_steps = vec_step * E

            updates = self.updates_due(vec_step, int(ended.sum()))
            filling = len(self.buffer) < self.batch_episodes
            trained = bool(updates) and not filling
            if trained:
                if self.flat_args["use_linear_lr_decay"]:
                    self.learner.lr_decay(vec_step, self.total_vec_steps)
                for _ in range(updates):
                    if self.stop_signal is not None:
                        break
                    with blame(self.args["algo"]):
                        info = self.learner.train(self.buffer.sample(self.batch_episodes).to(self.device))
                    self.diagnostics.add({f"train/{k}": v for k, v in info.items()})
            # until the buffer holds a batch there is no training rate to measure
            phase = f"filling the replay buffer {len(self.buffer)}/{self.batch_episodes} episodes" if filling else None
            run_logger.advance(self.total_steps, phase, mark=trained)
            self.finish_vector_step(
                vec_step, {"vec_step": vec_step, "pending_episodes": self.pending_episodes}, {"train/epsilon": epsilon}
            )
        self.save_model_weights(self.models_dir)

    def csv_diagnostic_names(self) -> tuple[str, ...]:
        return CSV_DIAGNOSTICS

    # ----------------------------------------------------------------- evaluation
    def eval_policy_reset(self, n_envs: int) -> tuple[torch.Tensor, np.ndarray]:
        return self.learner.initial_state(n_envs), np.full((n_envs, self.num_agents), -1, dtype=np.int64)

    @torch.no_grad()
    def eval_actions(self, obs, available_actions, policy_state, episode_starts):
        hidden, last = policy_state
        hidden = self._reset_where(np.asarray(episode_starts, dtype=bool), last, hidden)
        padded_obs, padded_avail = self._padded(obs, available_actions)
        epsilon = self.epsilon_args[1] if self.eval_explore else 0.0  # [1]: the schedule's end
        actions, hidden = self._act(padded_obs, padded_avail, last, hidden, epsilon)
        return [actions[:, i : i + 1] for i in range(self.num_agents)], (hidden, actions.copy())

    # ----------------------------------------------------------------- persistence
    def algorithm_state(self) -> dict[str, Any]:
        return {"learner": self.learner.state_dict(), "buffer": self.buffer.state_dict()}

    def load_algorithm_state(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["learner"])
        self.buffer.load_state_dict(state["buffer"])
        logger.info("Episode buffer restored from the checkpoint: %d episodes", len(self.buffer))

    def save_model_weights(self, directory: str) -> None:
        """``actor_agent0.pt``: the agent network every agent shares (HARL's file name, so that
        evaluation and the sweep find it), ``mixer.pt``: the mixer."""
        atomic_torch_save(self.learner.agent_net.state_dict(), os.path.join(directory, "actor_agent0.pt"))
        atomic_torch_save(self.learner.mixer.state_dict(), os.path.join(directory, "mixer.pt"))

    def restore_weights(self, model_dir: str) -> None:
        """Load :meth:`save_model_weights`'s files (the ``model_dir`` config key); the targets
        start as copies."""
        for name, net, target in (
            ("actor_agent0.pt", self.learner.agent_net, self.learner.target_agent_net),
            ("mixer.pt", self.learner.mixer, self.learner.target_mixer),
        ):
            weights = torch.load(os.path.join(model_dir, name), map_location=self.device, weights_only=True)
            net.load_state_dict(weights)
            target.load_state_dict(weights)
