"""GRU layer that resets its hidden state where ``masks`` is 0 (HARL's ``RNNLayer``)."""

from __future__ import annotations

import torch
from torch import nn

from harl.utils.models_tools import get_init_method


class RNNLayer(nn.Module):
    """``recurrent_n``-layer GRU followed by LayerNorm.

    Hidden states are batch-first, ``(N, recurrent_n, H)``, as stored in the buffers.
    """

    def __init__(self, inputs_dim: int, outputs_dim: int, recurrent_n: int, initialization_method: str) -> None:
        super().__init__()
        self.recurrent_n = recurrent_n
        self.rnn = nn.GRU(inputs_dim, outputs_dim, num_layers=recurrent_n)
        init_method = get_init_method(initialization_method)
        for name, param in self.rnn.named_parameters():
            if "bias" in name:
                nn.init.zeros_(param)
            else:
                init_method(param)
        self.norm = nn.LayerNorm(outputs_dim)

    def forward(self, x: torch.Tensor, hxs: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the GRU over one step or over whole sequences.

        Args:
            x: ``(N, in)`` for one step, or ``(T * N, in)``: ``T`` steps of ``N`` sequences flattened
                time-major (row ``t * N + n``), as the buffers' recurrent generators produce.
            hxs: ``(N, recurrent_n, H)`` hidden states before the first step.
            masks: same leading size as ``x`` with a trailing 1; 0 means "episode restarted here",
                so the hidden state is zeroed before that step.

        Returns:
            features ``(len(x), H)`` and the final hidden states ``(N, recurrent_n, H)``.
        """
        num_seqs = hxs.size(0)
        if x.size(0) % num_seqs != 0:
            raise ValueError(f"{x.size(0)} inputs cannot be split into {num_seqs} sequences")
        steps = x.size(0) // num_seqs
        x = x.view(steps, num_seqs, -1)
        masks = masks.view(steps, num_seqs, 1)
        h = hxs.transpose(0, 1).contiguous()  # GRU wants (recurrent_n, N, H)

        # The GRU can run uninterrupted between steps where some sequence restarts; only there
        # does the hidden state need masking. Step 0 always starts a segment.
        restarts = (masks[1:, :, 0] == 0).any(dim=1).nonzero().flatten() + 1
        bounds = [0, *restarts.tolist(), steps]
        outputs = []
        for start, end in zip(bounds[:-1], bounds[1:]):
            out, h = self.rnn(x[start:end], h * masks[start].unsqueeze(0))
            outputs.append(out)

        features = torch.cat(outputs).reshape(steps * num_seqs, -1)
        return self.norm(features), h.transpose(0, 1)
