"""Opt-in int8 weight-only quantization for faster CPU decoding.

    gen = museforge.load_generator("lyrics", quantize="int8")

Decoding one token at a time reads every weight once, and torch's bf16 matrix-vector kernel
reaches only ~11 GB/s here (fp32: 24 GB/s), so decoding is kernel-bound. Storing Linear weights
as int8 with one bf16 scale per output row halves the bytes and uses torch's
`_weight_int8pack_mm` kernel. Outputs change slightly: measure the quality cost with
`museforge eval MODEL --data FILE` against the unquantized model (benchmarks/gen_speed.py
--quantize int8 reports speed).
"""

from __future__ import annotations

import torch
from torch import nn

from museforge.errors import UserError


class Int8Linear(nn.Module):
    """y = x @ (int8 W * scale).T + b, for bf16 activations."""

    def __init__(self, linear: nn.Linear | None = None, weight: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None):
        super().__init__()
        w = (linear.weight if linear is not None else weight).detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.register_buffer("weight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        b = linear.bias if linear is not None else bias
        self.register_buffer("bias", None if b is None else b.detach().to(torch.bfloat16))
        self.in_features, self.out_features = w.shape[1], w.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, shape[-1]).to(torch.bfloat16).contiguous(),
                                               self.weight, self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear (the output head included, untied from the embedding) in place."""
    if next(model.parameters()).device.type != "cpu":
        raise UserError("quantize='int8' is a CPU decoding option; on a GPU use bf16")
    model.to(torch.bfloat16)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, Int8Linear(child))
    model.config.tie_word_embeddings = False
    model.config.museforge_quantized = "int8-weight-only"
    return model
