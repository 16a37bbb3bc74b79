"""Small helpers shared by the networks, the algorithms and the buffers."""

from __future__ import annotations

import math
from typing import Callable, Iterable

import gymnasium
import numpy as np
import torch
from torch import nn

ArrayLike = np.ndarray | torch.Tensor


def to_tensor(x: ArrayLike, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Return ``x`` as a tensor of ``dtype`` on ``device`` (no copy when it already is one)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    return x.to(device=device, dtype=dtype)


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """Detach ``x`` and return it as a numpy array on the CPU (HARL's ``_t2n``)."""
    return x.detach().cpu().numpy()


def get_active_func(activation_func: str) -> nn.Module:
    """Activation module named as in HARL's ``activation_func`` key."""
    modules = {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "leaky_relu": nn.LeakyReLU,
        "selu": nn.SELU,
        "hardswish": nn.Hardswish,
        "identity": nn.Identity,
    }
    if activation_func not in modules:
        raise ValueError(f"activation_func {activation_func!r} is not one of {sorted(modules)}")
    return modules[activation_func]()


def get_activation_gain(activation_func: str) -> float:
    """Recommended init gain for ``activation_func`` (``nn.init.calculate_gain``, as in HARL).

    ``calculate_gain`` does not know hardswish or identity; those get the ReLU and linear gains.
    """
    aliases = {"hardswish": "relu", "identity": "linear"}
    return nn.init.calculate_gain(aliases.get(activation_func, activation_func))


def get_init_method(initialization_method: str) -> Callable[..., torch.Tensor]:
    """In-place initialiser from ``torch.nn.init`` named by HARL's ``initialization_method``."""
    method = getattr(nn.init, initialization_method, None)
    if method is None or not initialization_method.endswith("_"):
        raise ValueError(
            f"initialization_method {initialization_method!r} is not an in-place torch.nn.init "
            "function (e.g. 'orthogonal_', 'xavier_uniform_')"
        )
    return method


def init(module: nn.Module, weight_init: Callable, bias_init: Callable, gain: float = 1.0) -> nn.Module:
    """Initialise ``module.weight`` with ``weight_init(gain=gain)`` and its bias with ``bias_init``."""
    weight_init(module.weight.data, gain=gain)
    bias_init(module.bias.data)
    return module


def init_linear(in_dim: int, out_dim: int, initialization_method: str, gain: float) -> nn.Linear:
    """A ``nn.Linear`` with HARL's initialisation: weights by method and gain, zero bias."""
    return init(nn.Linear(in_dim, out_dim), get_init_method(initialization_method), nn.init.zeros_, gain)


def get_grad_norm(parameters: Iterable[nn.Parameter]) -> float:
    """Global L2 norm of the gradients (what ``clip_grad_norm_`` would report, without clipping)."""
    squares = [p.grad.detach().pow(2).sum() for p in parameters if p.grad is not None]
    if not squares:
        return 0.0
    return math.sqrt(float(torch.stack(squares).sum()))


def huber_loss(e: torch.Tensor, d: float) -> torch.Tensor:
    """Element-wise Huber loss: quadratic for ``|e| <= d``, linear beyond."""
    abs_e = e.abs()
    return torch.where(abs_e <= d, 0.5 * e**2, d * (abs_e - 0.5 * d))


def mse_loss(e: torch.Tensor) -> torch.Tensor:
    """Element-wise half squared error (HARL's ``mse_loss``)."""
    return 0.5 * e**2


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1; plain mean when ``mask`` is None.

    The denominator is clamped at 1 so an all-inactive mini-batch gives 0 instead of NaN.
    """
    if mask is None:
        return x.mean()
    mask = mask.expand_as(x) if mask.dim() == x.dim() else mask.reshape(x.shape)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def update_linear_schedule(
    optimizer: torch.optim.Optimizer, epoch: int, total_num_epochs: int, initial_lr: float
) -> None:
    """Linear decay as in HARL: ``lr = initial_lr * (1 - (epoch - 1) / total_num_epochs)``."""
    learning_rate = initial_lr - initial_lr * ((epoch - 1) / float(total_num_epochs))
    for param_group in optimizer.param_groups:
        param_group["lr"] = learning_rate


def get_shape_from_obs_space(obs_space: gymnasium.Space | list | tuple) -> tuple:
    """Observation shape: ``space.shape`` for a gymnasium space, the list itself for a list spec."""
    if isinstance(obs_space, (list, tuple)):
        return tuple(obs_space)
    if obs_space.shape is None:
        raise ValueError(f"observation space {obs_space} has no shape")
    return tuple(obs_space.shape)


def get_shape_from_act_space(act_space: gymnasium.Space) -> int:
    """Width of one stored action: 1 for ``Discrete`` (the index), the vector size otherwise."""
    if isinstance(act_space, gymnasium.spaces.Discrete):
        return 1
    if isinstance(act_space, gymnasium.spaces.Box):
        return int(np.prod(act_space.shape))
    raise NotImplementedError(f"action space {type(act_space).__name__} is not supported")
