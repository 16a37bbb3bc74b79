"""Several networks of identical structure run as one: each layer one batched call over the
stacked parameter sets of ``G`` networks (agents), instead of ``G`` small calls."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


class LinearParams(NamedTuple):
    """A linear map given by its parameters (``weight (out, in)``, ``bias (out,)``), for a layer
    that is part of a larger ``nn.Linear`` (the denoiser's first layer)."""

    weight: Tensor
    bias: Tensor


class StackedLayers:
    """The same sequence of layers of ``G`` networks of identical structure as one batched call
    per layer: Linear (``nn.Linear`` or :class:`LinearParams`) as one ``bmm`` over the ``G``
    stacked weight sets, LayerNorm as one normalisation, parameter-free elementwise layers as
    they are. A LayerNorm's affine map is folded into the Linear layer after it (``W (g * n + b)
    + c = (W diag g) n + (W b + c)``), which saves one elementwise pass per normalisation. The
    weights are stacked when it is built; build it per sampling pass, under ``no_grad``.

    Called on ``z (G, N, in)``, returns ``(G, N, out)``.
    """

    def __init__(self, layer_lists: Sequence[Sequence[nn.Module | LinearParams]]) -> None:
        # (layer, weight, bias): Linear (G, in, out), (G, 1, out); LayerNorm (G, 1, n) each or
        # None once folded into the next Linear; parameter-free elementwise layers: None, None
        self.layers: list[tuple[Any, Tensor | None, Tensor | None]] = []
        for layers in zip(*layer_lists):
            first = layers[0]
            if isinstance(first, (nn.Linear, LinearParams, nn.LayerNorm)):
                weight = torch.stack([layer.weight for layer in layers])
                bias = torch.stack([layer.bias for layer in layers]).unsqueeze(1)
                if isinstance(first, nn.LayerNorm):
                    self.layers.append((first, weight.unsqueeze(1), bias))
                    continue
                weight = weight.transpose(1, 2)
                previous = self.layers[-1] if self.layers else None
                if previous is not None and isinstance(previous[0], nn.LayerNorm):
                    norm, gain, shift = previous
                    bias = torch.baddbmm(bias, shift, weight)
                    weight = gain.transpose(1, 2) * weight
                    self.layers[-1] = (norm, None, None)
                self.layers.append((first, weight, bias))
            else:
                self.layers.append((first, None, None))

    def __call__(self, z: Tensor) -> Tensor:
        for layer, weight, bias in self.layers:
            if isinstance(layer, (nn.Linear, LinearParams)):
                z = torch.baddbmm(bias, z, weight)
            elif isinstance(layer, nn.LayerNorm):
                z = F.layer_norm(z, layer.normalized_shape, eps=layer.eps)
                if weight is not None:
                    z = torch.addcmul(bias, z, weight)
            else:
                z = layer(z)
        return z


def layers_key(layers: Sequence[nn.Module | LinearParams]) -> tuple:
    """Equal for layer sequences :class:`StackedLayers` can batch (types and parameter shapes)."""
    return tuple(
        (
            type(layer).__name__,
            repr(layer) if isinstance(layer, nn.Module) else "",
            tuple(tuple(p.shape) for p in (layer.parameters() if isinstance(layer, nn.Module) else layer)),
        )
        for layer in layers
    )
