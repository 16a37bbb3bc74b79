"""Seeding and device selection."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

from harl.utils.errors import ConfigError

LOGGER = logging.getLogger(__name__)


def seed_generators(seed: int) -> None:
    """Seed python, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def set_seed(seed: int) -> None:
    """Seed a run: :func:`seed_generators`, and ``PYTHONHASHSEED`` exported so processes started
    later (environment workers) hash strings reproducibly; it cannot change the current
    interpreter.
    """
    seed_generators(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def available_cpu_count() -> int:
    """CPU cores this process may run on (respects affinity masks and container CPU sets)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def get_device(cuda: bool, cuda_deterministic: bool, torch_threads: int) -> torch.device:
    """Pick the training device and set torch's intra-op thread count.

    Args:
        cuda: use ``cuda:0`` when a GPU is available (falls back to CPU with a log line).
        cuda_deterministic: make cuDNN deterministic (otherwise let it benchmark kernels).
        torch_threads: intra-op threads, capped at :func:`available_cpu_count` because more
            threads than cores only adds contention.

    Raises:
        ConfigError: ``torch_threads`` is below 1.
    """
    if torch_threads < 1:
        raise ConfigError(f"torch_threads must be at least 1, got {torch_threads}.")
    if cuda and torch.cuda.is_available():
        device = torch.device("cuda:0")
        torch.backends.cudnn.deterministic = cuda_deterministic
        torch.backends.cudnn.benchmark = not cuda_deterministic
    else:
        if cuda:
            LOGGER.info("cuda is True but no CUDA device is available; training on the CPU.")
        device = torch.device("cpu")
    cores = available_cpu_count()
    threads = min(torch_threads, cores)
    if threads < torch_threads:
        LOGGER.info("torch_threads=%d capped to %d (CPU cores available).", torch_threads, cores)
    torch.set_num_threads(threads)
    return device
