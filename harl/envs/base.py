"""What every environment adapter implements, and the errors the environment layer raises.

The shapes follow ``docs/ARCHITECTURE.md`` (section "Environments"): one adapter is one
environment with ``N`` agents; the vectorised wrappers in :mod:`harl.envs.vec_env` stack ``E`` of
them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

# How a centralised critic sees the state (HARL): EP, one environment-provided state per step;
# FP, one feature-pruned state per agent.
STATE_TYPES = ("EP", "FP")


def check_state_type(state_type: Any, where: str = "state_type") -> None:
    """Raise ``ValueError`` unless ``state_type`` is one of :data:`STATE_TYPES`."""
    if state_type not in STATE_TYPES:
        raise ValueError(f"{where} must be one of {', '.join(STATE_TYPES)}, got {state_type!r}")


@dataclass(frozen=True)
class EnvSpec:
    """What the registry knows of an environment family before its adapter is imported: each
    family's ``__init__.py`` holds one as ``SPEC``, so the family owns its names and extras.

    Args:
        adapter: ``"module:AdapterClass"``, imported when the environment is first used.
        task_name: the task part of a run directory from the completed ``env_args``, e.g.
            ``simple_spread_v2-continuous``.
        extra: the pip extra of ``setup.py`` that installs the family's packages (None: none needed).
        provides: the top-level modules that extra installs (a missing one is reported with the
            pip line).
        install_command: the command to give instead of the pip line, when the extra cannot
            build the package alone.
    """

    adapter: str
    task_name: Callable[[dict[str, Any]], str]
    extra: str | None = None
    provides: tuple[str, ...] = ()
    install_command: str | None = None


class EnvNotInstalledError(ImportError):
    """The Python package behind an environment is missing; the message gives the pip line."""


class EnvWorkerError(RuntimeError):
    """An environment worker process raised or died; the message names env, worker and cause."""


class StepResult(NamedTuple):
    """What :meth:`VecEnv.step` returns for ``E`` environments of ``N`` agents."""

    obs: list[np.ndarray]
    """Per agent ``(E, d_i)`` float32, already the first observation of the next episode
    where an episode ended (the last one is in ``infos[k]["final_obs"]``)."""
    share_obs: np.ndarray
    """``(E, N, s)`` float32."""
    rewards: np.ndarray
    """``(E, N)`` float32."""
    dones: np.ndarray
    """``(E, N)`` bool, per agent."""
    available_actions: list[np.ndarray | None]
    """Per agent ``(E, n_i)`` float32 for discrete agents, ``None`` for continuous ones."""
    infos: list[dict[str, Any]]
    """One dict per environment with ``bad_transition`` and ``episode_done``, plus ``final_obs``,
    ``final_share_obs``, ``final_available_actions`` and ``episode_metrics`` on episode end."""


ResetResult = tuple[list[np.ndarray], np.ndarray, list[np.ndarray | None]]
"""``(obs per agent, share_obs (N, s), available_actions per agent)`` of one environment."""

EnvStepResult = tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any], list[np.ndarray | None]]
"""``(obs, share_obs (N, s), rewards (N,), dones (N,) bool, info, available_actions)``."""


class MultiAgentEnv(abc.ABC):
    """One multi-agent environment as the vectorised wrappers see it.

    Subclasses set the attributes below in ``__init__`` (the constructor receives the merged
    ``env_args`` dict) and implement :meth:`reset`, :meth:`step` and :meth:`close`.

    ``step`` puts ``info["bad_transition"] = True`` when the episode ended by a time limit
    (truncation, not termination) and, on the step that ends an episode,
    ``info["episode_metrics"]``: a dict with exactly the keys of ``episode_metric_names``.
    Box actions arrive as the policy's raw output; the adapter clips them to its action space.
    Discrete actions arrive as ``(1,)`` arrays holding the action index.
    """

    n_agents: int
    observation_spaces: list[spaces.Box]
    share_observation_spaces: list[spaces.Box]
    action_spaces: list[spaces.Box | spaces.Discrete]
    episode_metric_names: tuple[str, ...] = ()
    episode_limit: int | None = None
    """The longest an episode can last, in steps; None when the adapter does not bound it."""
    default_env_workers: int = 0
    """Worker processes when the config's ``n_env_workers`` is null: 0 (in-process) suits fast
    simulators; a slow one (Football) says -1, one per CPU core."""
    compiles_on_first_steps: bool = False
    """True when the first reset and steps compile the environment (JAX's jit): the progress
    display then says ``compiling the batched environment`` instead of an fps and ETA."""

    @staticmethod
    def check_args(args: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming the supported values when ``args`` (env_args already
        completed with the YAML defaults) cannot be served; called before any env is built."""

    @classmethod
    def make_batched_vec_env(cls, env_args: dict[str, Any], n_envs: int, base_seed: int) -> Any | None:
        """A vectorised env that steps all ``n_envs`` environments in one call (the API of
        ``harl.envs.vec_env``, env ``k`` seeded ``base_seed + k``), or None (the default) to
        step adapters one by one in-process or in worker processes."""
        return None

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> ResetResult:
        """Start a new episode; ``seed=None`` continues the environment's own random stream."""

    @abc.abstractmethod
    def step(self, actions: list[np.ndarray]) -> EnvStepResult:
        """Apply one action per agent (``(a_i,)`` arrays) and advance one time step."""

    def close(self) -> None:
        """Release what the environment holds (windows, simulators); default: nothing."""
