"""Observation storage of the buffers: numpy arrays on the host, or torch tensors on a device.

Most environments hand out numpy observations and the buffers keep them in numpy arrays. An
environment that simulates on a GPU (Bi-DexterousHands on Isaac Gym) hands out torch tensors on
its device, saying so with its ``observation_device`` attribute (``docs/ARCHITECTURE.md``); the
buffers then keep observations and shared observations as tensors on the training device, so they
never go through host memory between the simulator, the buffers and the networks. Both kinds take
the same indexing (torch accepts numpy index arrays and masks), so only creation, stacking and
checkpoint conversion differ, and live here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

Storage = np.ndarray | torch.Tensor


def observation_storage_device(envs: object, device: torch.device) -> torch.device | None:
    """Where the buffers of a run keep observations: ``device`` (the training device) when the
    environments hand out tensors (``observation_device`` set), else ``None`` (numpy, host)."""
    return device if getattr(envs, "observation_device", None) is not None else None


def zeros(shape: Sequence[int], device: torch.device | None) -> Storage:
    """float32 zeros: a numpy array when ``device`` is ``None``, else a tensor on ``device``."""
    if device is None:
        return np.zeros(tuple(shape), np.float32)
    return torch.zeros(tuple(shape), dtype=torch.float32, device=device)


def zeros_like(array: Storage, shape: Sequence[int]) -> Storage:
    """Zeros of ``array``'s kind, dtype and device, of ``shape``."""
    shape = tuple(shape)
    if isinstance(array, torch.Tensor):
        return torch.zeros(shape, dtype=array.dtype, device=array.device)
    return np.zeros(shape, array.dtype)


def stack(arrays: Sequence[Storage], like: Storage) -> Storage:
    """``arrays`` stacked on a new first axis, as the kind (and device) of ``like``."""
    if isinstance(like, torch.Tensor):
        return torch.stack([torch.as_tensor(a, dtype=like.dtype, device=like.device) for a in arrays])
    return np.stack([np.asarray(a, like.dtype) for a in arrays])


def concatenate(arrays: Sequence[Storage], axis: int) -> Storage:
    """``arrays`` (all of one kind) joined along ``axis``."""
    if isinstance(arrays[0], torch.Tensor):
        return torch.cat(list(arrays), dim=axis)
    return np.concatenate(arrays, axis=axis)


def as_stored(value: object, like: Storage) -> Storage:
    """``value`` (numpy array, tensor or list of them) as ``like``'s kind, ready to assign into it."""
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return np.asarray(value, like.dtype)


def to_saved(array: Storage, copy: bool = False) -> torch.Tensor:
    """A checkpoint's host tensor of ``array``: a numpy array's memory shared unless ``copy``; a
    tensor copied to the host (``torch.save`` would write a view's whole storage, and a checkpoint
    should load on any device)."""
    if isinstance(array, torch.Tensor):
        return array.detach().to("cpu", copy=True)
    return torch.from_numpy(array.copy() if copy else array)
