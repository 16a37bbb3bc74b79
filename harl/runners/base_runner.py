"""What every runner shares: seeding, device, run directory, environments, logging, evaluation
and checkpoints. On-policy and off-policy runners subclass it and fill in collection and training.

Length (about 490 lines): the run's life cycle in one place (directory, resume, signals,
evaluation, checkpoints), which every runner family shares.
"""

from __future__ import annotations

import abc
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from harl.envs import check_run_env_args, get_task_name, load_adapter, make_eval_env, make_train_env
from harl.envs.base import check_state_type
from harl.utils.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    capture_rng_state,
    checkpoint_path,
    isolated_rng,
    load_checkpoint,
    restore_rng_state,
)
from harl.utils.configs_tools import check_writable, get_defaults_yaml_args, init_dir, save_config
from harl.utils.envs_tools import get_device, set_seed
from harl.utils.errors import ConfigError
from harl.utils.finite import NonFiniteError, check_actions, non_finite_entries, torch_refusals_as_non_finite
from harl.utils.logger import EpisodeTracker, RunLogger, ScalarWindow, row_grid
from harl.utils.plotting import plot_learning_curve

logger = logging.getLogger(__name__)

# models/<SNAPSHOTS_DIR>/step_<env step>/: the weights kept at each checkpoint (keep_snapshots)
SNAPSHOTS_DIR = "snapshots"


class RunStopped(Exception):
    """SIGTERM or SIGINT stopped the run after a final checkpoint; the message says how to resume."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention for a process ended by a signal


def check_model_dir(model_dir: str) -> str:
    """``model_dir`` when it holds HARL-style weights (``actor_agent0.pt`` ...), else ConfigError."""
    if not os.path.isfile(os.path.join(model_dir, "actor_agent0.pt")):
        raise ConfigError(
            f"--model_dir {model_dir} holds no weights (no actor_agent0.pt): pass the models/ folder of a "
            "finished run; a stopped run's models/checkpoint.pt continues with --resume RUN_DIR instead."
        )
    return model_dir


def flatten_sections(algo_args: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Merge HARL's config sections into one dict; leaf keys are unique across sections."""
    return {key: value for section in algo_args.values() for key, value in section.items()}


class BaseRunner(abc.ABC):
    """Set up one training run and drive its loop; subclasses implement the algorithm side.

    Args:
        args: ``{"algo", "env", "exp_name", "load_config", "resume"}`` from the command line.
        algo_args: the algorithm config, HARL's sections.
        env_args: the environment config.
    """

    #: one algorithm object per agent (the same object ``N`` times with ``share_param``), set by
    #: the family's ``__init__`` through :meth:`build_actors`; QMIX keeps its learner elsewhere
    actor: list[Any]
    #: the window of training diagnostics written at each ``progress.csv`` row
    diagnostics: ScalarWindow

    @classmethod
    def check_config(cls, algo_args: dict[str, Any], env_args: dict[str, Any]) -> None:
        """Refuse settings that no run can train with, from the config alone (no environment is
        built): the runner calls it first, and a sweep calls it for every run before starting any.

        Raises:
            ConfigError: the first such setting, with what to change.
        """
        state_type = env_args.get("state_type", "EP")
        try:
            check_state_type(state_type)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def __init__(self, args: dict[str, Any], algo_args: dict[str, Any], env_args: dict[str, Any]):
        # before anything is written: a bad env argument leaves no run directory behind
        env_args = check_run_env_args(args["env"], env_args)
        self.args, self.algo_args, self.env_args = args, algo_args, env_args
        self.flat_args = {**flatten_sections(algo_args), **env_args}
        train_cfg = algo_args["train"]
        self.num_env_steps: int = int(train_cfg["num_env_steps"])
        # the step count the loop ends at (num_env_steps rounded down to whole iterations)
        self.final_total_steps: int = self.num_env_steps
        self.n_rollout_threads: int = int(train_cfg["n_rollout_threads"])
        self.state_type: str = env_args.get("state_type", "EP")
        self.check_config(algo_args, env_args)

        if not algo_args["seed"]["seed_specify"]:
            algo_args["seed"]["seed"] = int(np.random.SeedSequence().entropy % 10_000)
        self.seed: int = int(algo_args["seed"]["seed"])
        set_seed(self.seed)
        device_cfg = algo_args["device"]
        self.device = get_device(device_cfg["cuda"], device_cfg["cuda_deterministic"], device_cfg["torch_threads"])

        self.task_name = get_task_name(args["env"], env_args)
        # A new run's directory is created by run(), once everything it needs has been built:
        # a setting refused below leaves nothing behind.
        self.run_dir = os.path.abspath(args["resume"]) if args.get("resume") else ""
        if not self.run_dir:
            check_writable(algo_args["logger"]["log_dir"])

        n_env_workers = train_cfg["n_env_workers"]
        reply_timeout = float(train_cfg["env_reply_timeout"])
        self.envs = make_train_env(
            args["env"], self.seed, self.n_rollout_threads, env_args, n_env_workers, reply_timeout
        )
        self.eval_envs = None
        if algo_args["eval"]["use_eval"]:
            self.eval_envs = make_eval_env(
                args["env"],
                self.seed,
                int(algo_args["eval"]["n_eval_rollout_threads"]),
                env_args,
                n_env_workers,
                reply_timeout,
            )
        self.num_agents: int = self.envs.n_agents
        # QMIX and VDN have neither key: they build no per-agent actors
        self.share_param = bool(self.flat_args.get("share_param", False))
        self.fixed_order = bool(self.flat_args.get("fixed_order", False))
        self.train_tracker = EpisodeTracker(self.n_rollout_threads)
        self.total_steps = 0
        self.elapsed_before_resume = 0.0
        self.run_logger: RunLogger | None = None
        self.last_checkpoint_step: int | None = None
        self.stop_signal: int | None = None  # set by SIGTERM/SIGINT while run() trains
        # evaluate the behaviour policy (sampled actions, exploration as at the end of training)
        # instead of the deterministic one: examples/evaluate.py --stochastic
        self.eval_explore = False
        # JAX environments compile their first reset and steps, for each batch size: the training
        # vector at the start, the evaluation vector at the first evaluation
        self.compiles = bool(getattr(load_adapter(args["env"]), "compiles_on_first_steps", False))
        self.eval_compiled = False

    @property
    def models_dir(self) -> str:
        """``<run_dir>/models``: the checkpoint and the HARL-style weight files."""
        return os.path.join(self.run_dir, "models")

    # ----------------------------------------------------------------- actors
    def build_actors(self, actor_cls: type) -> list:
        """One actor per agent, or one object repeated for every agent with ``share_param``."""
        envs = self.envs
        if self.share_param:
            for agent_id in range(1, self.num_agents):
                if (
                    envs.observation_spaces[agent_id] != envs.observation_spaces[0]
                    or envs.action_spaces[agent_id] != envs.action_spaces[0]
                ):
                    raise ConfigError(
                        "share_param=True needs every agent to have the same observation and "
                        f"action spaces, but agent {agent_id} differs from agent 0; run with "
                        "--share_param False"
                    )
            shared = actor_cls(self.flat_args, envs.observation_spaces[0], envs.action_spaces[0], device=self.device)
            return [shared] * self.num_agents
        return [
            actor_cls(self.flat_args, envs.observation_spaces[i], envs.action_spaces[i], device=self.device)
            for i in range(self.num_agents)
        ]

    def unique_actors(self) -> list:
        """The distinct actor objects (one when parameters are shared)."""
        return self.actor[:1] if self.share_param else self.actor

    # ----------------------------------------------------------------- subclass interface
    def run(self) -> None:
        """Train until ``num_env_steps`` environment steps have been taken.

        SIGTERM or SIGINT stop it at the next safe point after a final checkpoint
        (:class:`RunStopped`); a NaN or infinity stops it at once, and nothing non-finite is
        saved (:class:`NonFiniteError`, with what failed, when, and which checkpoint is kept).
        """
        if not self.run_dir:
            self.run_dir = init_dir(
                self.args["env"],
                self.args["algo"],
                self.args["exp_name"],
                self.seed,
                self.algo_args["logger"]["log_dir"],
                self.task_name,
            )
            save_config(self.args, self.algo_args, self.env_args, self.run_dir)
        os.makedirs(self.models_dir, exist_ok=True)
        progress = self.maybe_resume()
        if progress is not None and self.total_steps >= self.final_total_steps:
            raise ConfigError(
                f"{self.run_dir} already finished at {self.total_steps:,} env steps (num_env_steps "
                f"{self.num_env_steps:,}); nothing to resume. Evaluate it with: python "
                f"examples/evaluate.py {self.run_dir}"
            )
        with self._stop_signals():
            try:
                with torch_refusals_as_non_finite():
                    self.train_loop(progress)
            except NonFiniteError as err:
                raise self._training_failure(err) from None

    @abc.abstractmethod
    def train_loop(self, progress: dict[str, Any] | None) -> None:
        """The algorithm family's collection and training loop (see :meth:`run`), from the loop
        counters of a resumed checkpoint (``progress``) or from the start (None)."""

    @contextmanager
    def _stop_signals(self) -> Iterator[None]:
        """While training, SIGTERM and SIGINT ask the loop to stop at its next safe point; a
        second SIGINT stops at once."""

        def request_stop(signum: int, frame: Any) -> None:
            if self.stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_signal = signum
            logger.warning(
                "%s received: finishing the current step, saving a checkpoint, then stopping",
                signal.Signals(signum).name,
            )

        try:
            previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        except ValueError:  # not the main thread: signals cannot be caught here
            previous = {}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop_if_requested(self, progress: dict[str, Any], saved: bool) -> None:
        """At a safe point of the loop: after a stop signal, checkpoint (unless ``saved`` just
        now) and raise :class:`RunStopped`."""
        if self.stop_signal is None:
            return
        if not saved:
            self.save_checkpoint(progress)
        name = signal.Signals(self.stop_signal).name
        raise RunStopped(
            f"stopped by {name} at env step {self.total_steps:,} after saving a checkpoint; continue "
            f"with: python examples/train.py --resume {self.run_dir}",
            self.stop_signal,
        )

    # ----------------------------------------------------------------- vectorised-step loops
    def read_vector_step_schedule(self) -> None:
        """The schedule of the loops that count vectorised steps (off-policy, QMIX, VDN):
        ``train_interval`` and ``eval_interval`` in vectorised steps, ``update_per_train *
        train_interval`` updates per training phase, a ``progress.csv`` row at every evaluation
        and at least every ``1 / PROGRESS_ROWS`` of the budget, checkpoints every
        ``checkpoint_interval`` env steps; the run ends at ``num_env_steps`` rounded down to
        whole vectorised steps."""
        train_cfg = self.algo_args["train"]
        self.total_vec_steps = self.num_env_steps // self.n_rollout_threads
        self.final_total_steps = self.total_vec_steps * self.n_rollout_threads
        self.train_interval = int(train_cfg["train_interval"])
        self.updates_per_train = max(1, int(float(train_cfg["update_per_train"]) * self.train_interval))
        self.eval_interval = int(train_cfg["eval_interval"])
        # progress.csv rows between evaluations too, so a long eval_interval leaves no gap
        self.row_vec_interval = row_grid(self.total_vec_steps)
        self.checkpoint_vec_interval = max(1, int(train_cfg["checkpoint_interval"]) // self.n_rollout_threads)
        if self.checkpoint_vec_interval < self.train_interval:
            # on-policy files count checkpoint_interval in rollouts (HARL: 10); here 10 is every step
            logger.warning(
                "checkpoint_interval %s counts env steps for %s (the on-policy algorithms count rollouts): "
                "a checkpoint, replay buffer included, every %d vectorised steps will slow training down "
                "several times; the %s defaults checkpoint every %s env steps",
                train_cfg["checkpoint_interval"],
                self.args["algo"],
                self.checkpoint_vec_interval,
                self.args["algo"],
                f"{get_defaults_yaml_args(self.args['algo'], self.args['env'])[0]['train']['checkpoint_interval']:,}",
            )

    def finish_vector_step(
        self, vec_step: int, progress: dict[str, Any], extra: dict[str, float] | None = None
    ) -> None:
        """After vectorised step ``vec_step`` of such a loop: evaluate every ``eval_interval``
        and at the end; log a row (the training episodes and the diagnostics window,
        ``self.diagnostics`` plus ``extra``) then and every ``row_vec_interval``; checkpoint every
        ``checkpoint_vec_interval`` and at the end, then honour a stop signal."""
        run_logger = self.run_logger
        is_last = vec_step == self.total_vec_steps
        evaluate = vec_step % self.eval_interval == 0 or is_last
        if evaluate or vec_step % self.row_vec_interval == 0:
            row = self.evaluate() if evaluate and self.eval_envs is not None else {}
            diagnostics = {**self.diagnostics.flush(), **(extra or {})}
            in_csv = set(run_logger.diagnostic_names)
            row.update({k: v for k, v in diagnostics.items() if k in in_csv})
            run_logger.log_row(self.total_steps, row=row)
            run_logger.log_scalars({k: v for k, v in diagnostics.items() if k not in in_csv}, self.total_steps)
        saved = vec_step % self.checkpoint_vec_interval == 0 or is_last
        if saved:
            self.save_checkpoint(progress)
        self.stop_if_requested(progress, saved)

    def checked_step(self, actions: list[np.ndarray]):
        """Step the training environments with actions known to be finite."""
        check_actions(actions)
        return self.envs.step(actions)

    def _training_failure(self, err: NonFiniteError) -> NonFiniteError:
        """The one-paragraph error of a run stopped by a NaN or infinity."""
        if self.last_checkpoint_step is None:
            kept = "no checkpoint had been written yet"
        else:
            kept = (
                f"the last checkpoint, at {self.last_checkpoint_step:,} env steps, is kept in "
                f"{checkpoint_path(self.run_dir)}"
            )
        rates = ", ".join(f"{key} {self.flat_args[key]}" for key in ("lr", "critic_lr") if key in self.flat_args)
        return NonFiniteError(
            f"training stopped at env step {self.total_steps:,}: {err}. Nothing non-finite was saved; "
            f"{kept}; the logs up to here are in {self.run_dir}. A learning rate too large for the "
            f"task is the usual cause ({rates}): start a new run with smaller ones."
        )

    @abc.abstractmethod
    def algorithm_state(self) -> dict[str, Any]:
        """Everything the algorithm needs to continue: networks, optimisers, normalisers."""

    @abc.abstractmethod
    def load_algorithm_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`algorithm_state`."""

    @abc.abstractmethod
    def save_model_weights(self, directory: str) -> None:
        """Write HARL-style weight files (``actor_agent<i>.pt`` ...) into ``directory`` (``models/``
        at the end of a run, a snapshot's folder with ``keep_snapshots``)."""

    @abc.abstractmethod
    def eval_policy_reset(self, n_envs: int) -> Any:
        """Fresh per-episode policy state for evaluation (e.g. recurrent states); may be None."""

    @abc.abstractmethod
    def eval_actions(
        self,
        obs: list[np.ndarray],
        available_actions: list[np.ndarray | None],
        policy_state: Any,
        episode_starts: np.ndarray,
    ) -> tuple[list[np.ndarray], Any]:
        """Decentralised actions of every agent for evaluation: deterministic, or as in training
        when ``eval_explore`` is set."""

    # ----------------------------------------------------------------- logging
    def start_logger(self) -> RunLogger:
        """Open TensorBoard, progress.csv and the progress bar at the current step; for an
        environment that compiles, the display says so until the first steps are done."""
        self.run_logger = RunLogger(
            self.run_dir,
            tuple(self.envs.episode_metric_names),
            self.final_total_steps,
            start_step=self.total_steps,
            start_wall=self.elapsed_before_resume,
            diagnostic_names=self.csv_diagnostic_names(),
        )
        if self.compiles:
            self.run_logger.announce("compiling the batched environment")
        return self.run_logger

    def csv_diagnostic_names(self) -> tuple[str, ...]:
        """Algorithm diagnostics that get a ``progress.csv`` column (default: none)."""
        return ()

    # ----------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, before_step: Callable[[], None] | None = None) -> dict[str, float]:
        """Run ``eval_episodes`` decentralised episodes and return their mean return and metrics.

        The policies sample from generators seeded by the run's seed and env step, restored
        afterwards, so evaluation settings (or evaluating at all) leave the training run as it is.
        ``before_step``, when given, is called before every vectorised step (e.g. to record the
        agents' positions from ``eval_envs``).
        """
        assert self.eval_envs is not None
        compiling = self.compiles and not self.eval_compiled and self.run_logger is not None
        if compiling:
            previous = self.run_logger.phase
            self.run_logger.announce("compiling the evaluation environment")
            start = time.monotonic()
        with isolated_rng(int(np.random.SeedSequence([self.seed, self.total_steps]).generate_state(1)[0])):
            result = self._evaluate_episodes(before_step)
        if compiling:  # the training rate and ETA leave the compilation out
            self.run_logger.exclude_from_rate(time.monotonic() - start)
            self.run_logger.phase = previous
        self.eval_compiled = True
        return result

    def _evaluate_episodes(self, before_step: Callable[[], None] | None) -> dict[str, float]:
        eval_episodes = int(self.algo_args["eval"]["eval_episodes"])
        n_envs = self.eval_envs.n_envs
        tracker = EpisodeTracker(n_envs)
        obs, _, available_actions = self.eval_envs.reset()
        policy_state = self.eval_policy_reset(n_envs)
        episode_starts = np.ones(n_envs, dtype=bool)
        returns: list[float] = []
        metrics: dict[str, list[float]] = {}
        while len(returns) < eval_episodes:
            actions, policy_state = self.eval_actions(obs, available_actions, policy_state, episode_starts)
            if before_step is not None:
                before_step()
            result = self.eval_envs.step(actions)
            obs, available_actions = result.obs, result.available_actions
            finished = tracker.update(result.rewards, result.infos)
            returns.extend(finished.returns)
            for name, values in finished.metrics.items():
                metrics.setdefault(name, []).extend(values)
            episode_starts = np.array([info["episode_done"] for info in result.infos])
        out = {"eval_episode_return": float(np.mean(returns[:eval_episodes]))}
        for name, values in metrics.items():
            out[f"eval_{name}"] = float(np.mean(values[:eval_episodes]))
        return out

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self, progress: dict[str, Any]) -> None:
        """Write ``models/checkpoint.pt`` atomically; ``progress`` holds the loop counters."""
        state = {
            "algorithm": self.algorithm_state(),
            "rng": capture_rng_state(),
            "progress": progress,
            "total_steps": self.total_steps,
            "wall_time": self.run_logger.wall_time() if self.run_logger else self.elapsed_before_resume,
        }
        non_finite = non_finite_entries(state)
        if non_finite:  # the previous checkpoint stays: it is the last good state
            raise NonFiniteError(f"the state to checkpoint holds non-finite values ({', '.join(non_finite[:3])})")
        atomic_torch_save(state, checkpoint_path(self.run_dir))
        self.last_checkpoint_step = self.total_steps
        if self.flat_args.get("keep_snapshots"):
            self.save_snapshot()
        plot_learning_curve(self.run_dir, f"{self.args['algo']} on {self.args['env']} {self.task_name}")

    def save_snapshot(self) -> None:
        """Keep this checkpoint's weights in ``models/snapshots/step_<env step>/``, written to a
        temporary folder and renamed, so that a snapshot folder is always complete."""
        final = os.path.join(self.models_dir, SNAPSHOTS_DIR, f"step_{self.total_steps}")
        if os.path.isdir(final):  # a resumed run passes its last checkpoint's step again
            return
        partial = final + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        self.save_model_weights(partial)
        os.replace(partial, final)

    def maybe_resume(self) -> dict[str, Any] | None:
        """Load the checkpoint of ``--resume RUN_DIR``; returns its loop counters or None."""
        if not self.args.get("resume"):
            return None
        path = checkpoint_path(self.run_dir)
        state = load_checkpoint(path, self.device)
        non_finite = non_finite_entries(state["algorithm"])
        if non_finite:  # written by an older version, before checkpoints were checked
            raise CheckpointError(
                f"{path} holds non-finite values ({', '.join(non_finite[:3])}); it cannot be "
                "resumed. Start a new run, with smaller learning rates if they diverged."
            )
        self.load_algorithm_state(state["algorithm"])
        restore_rng_state(state["rng"])
        self.total_steps = int(state["total_steps"])
        self.last_checkpoint_step = self.total_steps
        self.elapsed_before_resume = float(state["wall_time"])
        logger.info("Resuming %s from env step %d", self.run_dir, self.total_steps)
        return state["progress"]

    def close(self) -> None:
        """Close environments and logs."""
        self.envs.close()
        if self.eval_envs is not None:
            self.eval_envs.close()
        if self.run_logger is not None:
            self.run_logger.close()
