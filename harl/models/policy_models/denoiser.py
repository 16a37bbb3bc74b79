"""The parts of a diffusion actor below the sampler: noise schedules, the sinusoidal step
embedding, and the denoiser network ``eps_theta(x_t, t, o)`` (or ``a_theta`` with ``prediction:
x0``), whose layers :mod:`~harl.models.policy_models.group_sampling` stacks across agents.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harl.models.base.mlp import MLPBase, MLPLayer
from harl.models.base.stacked import LinearParams, layers_key
from harl.utils.models_tools import get_activation_gain, get_active_func, init_linear

Tensor = torch.Tensor

# Offset s of the cosine schedule (Nichol & Dhariwal 2021), part of its definition: it keeps
# beta_1 away from 0.
COSINE_OFFSET = 0.008
# Largest beta of the linear and cosine schedules (Nichol & Dhariwal 2021): keeps alpha_t > 0.
MAX_BETA = 0.999
# Longest period of the sinusoidal step embedding (Vaswani et al. 2017).
MAX_PERIOD = 10000.0

# --- noise schedules ------------------------------------------------------------------------


def beta_schedule(name: str, n_timesteps: int, beta_min: float, beta_max: float) -> Tensor:
    """Noise schedule ``beta_1..beta_T`` as a float64 tensor ``(T,)``.

    * ``vp``: the variance-preserving SDE with ``beta(tau) = beta_min + tau (beta_max - beta_min)``
      on ``tau in [0, 1]``, integrated exactly over each of the T steps:
      ``beta_t = 1 - exp(-int_{(t-1)/T}^{t/T} beta(tau) dtau)`` (Song et al. 2021). Well
      conditioned for the small T HAQO uses.
    * ``linear``: DDPM's linear betas, ``linspace(beta_min / T, beta_max / T)`` (DDPM's 1e-4..0.02
      are ``beta_min = 0.1, beta_max = 20`` at ``T = 1000``), capped at ``MAX_BETA``.
    * ``cosine``: ``abar_t = f(t) / f(0)``, ``f(t) = cos^2((t/T + s) / (1 + s) pi / 2)``
      (Nichol & Dhariwal 2021), betas capped at ``MAX_BETA``; ``beta_min``/``beta_max`` unused.
    """
    if n_timesteps < 1:
        raise ValueError(f"n_timesteps must be >= 1, got {n_timesteps}")
    t = torch.arange(1, n_timesteps + 1, dtype=torch.float64)
    if name == "vp":
        integral = beta_min / n_timesteps + 0.5 * (beta_max - beta_min) * (2 * t - 1) / n_timesteps**2
        return -torch.expm1(-integral)
    if name == "linear":
        betas = torch.linspace(beta_min, beta_max, n_timesteps, dtype=torch.float64) / n_timesteps
        return betas.clamp(max=MAX_BETA)
    if name == "cosine":
        tau = torch.cat([t.new_zeros(1), t]) / n_timesteps
        f = torch.cos((tau + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)
    raise ValueError(f"beta_schedule must be 'vp', 'linear' or 'cosine', not {name!r}")


def sinusoidal_embedding(steps: Tensor, dim: int) -> Tensor:
    """``[sin(t w_j), cos(t w_j)]`` with ``w_j = MAX_PERIOD^(-j / (dim/2 - 1))``: ``(*steps.shape, dim)``."""
    if dim < 4 or dim % 2:
        raise ValueError(f"time_embed_dim must be even and >= 4, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float64) / (half - 1))
    angles = steps.to(torch.float64).unsqueeze(-1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1).to(torch.float32)


class Denoiser(nn.Module):
    """``eps_theta(x_t, t, o)``: HARL's ``MLPBase`` on ``o`` (feature normalisation,
    ``hidden_sizes``, ``activation_func``), a sinusoidal embedding of ``t``, both concatenated with
    ``x_t`` and passed through ``Linear -> act -> LayerNorm`` layers of ``hidden_sizes`` and a
    linear output.

    The first layer on ``[x_t; emb(t); h(o)]`` is evaluated as ``W_x x_t + W_t emb(t) + (W_o h(o) + b)``
    (the same function): :meth:`context` computes the observation part once per state, and each
    denoising step of every candidate reuses it by broadcasting.

    Args:
        args: model keys ``hidden_sizes``, ``activation_func``, ``use_feature_normalization``,
            ``initialization_method``, ``gain`` (output layer), ``time_embed_dim``.
        obs_dim: ``d``.
        action_dim: ``dim`` of the diffused variable.
        n_timesteps: ``T``.
    """

    def __init__(self, args: dict, obs_dim: int, action_dim: int, n_timesteps: int) -> None:
        super().__init__()
        hidden_sizes = list(args["hidden_sizes"])
        method, activation = args["initialization_method"], args["activation_func"]
        time_dim = args["time_embed_dim"]
        self.obs_base = MLPBase(args, (obs_dim,))
        self.register_buffer(
            "time_features", sinusoidal_embedding(torch.arange(1, n_timesteps + 1), time_dim), persistent=False
        )
        self.split = (action_dim, time_dim, hidden_sizes[-1])
        self.input_layer = init_linear(sum(self.split), hidden_sizes[0], method, get_activation_gain(activation))
        self.input_act = get_active_func(activation)
        self.input_norm = nn.LayerNorm(hidden_sizes[0])
        self.hidden = MLPLayer(hidden_sizes[0], hidden_sizes[1:], method, activation)
        self.output_layer = init_linear(hidden_sizes[-1], action_dim, method, args["gain"])
        # equal for denoisers whose observation parts one StackedLayers call can batch
        self.context_key = layers_key(self.context_layers())
        # group_stacks' stacked parameter sets of the groups this denoiser leads, and the
        # parameters it watches (the Parameter objects stay for the module's life: .to(),
        # optimizers and load_state_dict write into them)
        self.group_stacks_cache: dict = {}
        self.watched_parameters = tuple(self.parameters())

    def obs_projection(self) -> LinearParams:
        """The first layer's observation part ``W_o``, with the layer's bias."""
        return LinearParams(self.input_layer.weight[:, self.split[0] + self.split[1] :], self.input_layer.bias)

    def context(self, obs: Tensor) -> Tensor:
        """Observation part of the first layer, ``W_o h(o) + b``: ``(*lead, hidden_sizes[0])``."""
        return F.linear(self.obs_base(obs), *self.obs_projection())

    def context_layers(self) -> list[nn.Module | LinearParams]:
        """:meth:`context` as a sequence of layers (for :class:`StackedLayers`): the observation
        base's, then :meth:`obs_projection`."""
        norm = [self.obs_base.feature_norm] if self.obs_base.use_feature_normalization else []
        return [*norm, *self.obs_base.mlp.fc, self.obs_projection()]

    def time_bias(self) -> Tensor:
        """Step part of the first layer, ``W_t emb(t)`` for every step: ``(T, hidden_sizes[0])``."""
        return F.linear(self.time_features, self.input_layer.weight[:, self.split[0] : self.split[0] + self.split[1]])

    def step_conditions(self, obs: Tensor) -> Tensor:
        """What :meth:`head` needs besides ``x`` at each step, ``context + time_bias[k]``:
        ``(T, *lead, hidden)`` for observations ``(*lead, d)``, computed once per sampling pass."""
        time_bias = self.time_bias()
        return time_bias.view(len(time_bias), *([1] * (obs.dim() - 1)), -1) + self.context(obs)

    def action_weight(self) -> Tensor:
        """The noisy action's part of the first layer's weight, ``W_x``: ``(hidden_sizes[0], dim)``."""
        return self.input_layer.weight[:, : self.split[0]]

    def head_layers(self) -> list[nn.Module]:
        """The layers after the first layer's pre-activation, in order."""
        return [self.input_act, self.input_norm, *self.hidden.fc, self.output_layer]

    def head(self, x: Tensor, condition: Tensor) -> Tensor:
        """Predicted noise ``(*L, dim)`` from the noisy action and the rest of the first layer's
        pre-activation, ``condition = context + time_bias[k]`` (broadcastable to ``(*L, hidden)``)."""
        z = F.linear(x, self.action_weight()) + condition
        for layer in self.head_layers():
            z = layer(z)
        return z

    def forward(self, x: Tensor, k: Tensor, context: Tensor) -> Tensor:
        """Predicted noise ``(*L, dim)``.

        Args:
            x: noisy actions ``(*L, dim)``.
            k: step indices (``t - 1``), int64, broadcastable to ``x.shape[:-1]``.
            context: :meth:`context` of the observations, broadcastable to ``(*L, hidden)``.
        """
        return self.head(x, self.time_bias()[k] + context)
