"""Two CPU fast paths of the training loop, each measured here and each keeping the run's settings.

    from museforge.cpu_training import faster_in_fp32, use_fp32_attention, use_fast_dropout
    if faster_in_fp32(model, batch=8, block=128, dtype=torch.bfloat16):  # measured once, at the run's shape
        use_fp32_attention(model)
    use_fast_dropout(model)                                              # the training loop does both

(The third, freed memory kept between steps, is museforge.memory.)

**Attention precision.** Under bf16 autocast, transformers' attention runs torch's CPU flash
kernel in bf16. Without AMX (avx512_bf16 only, as on this project's machine) that kernel's
forward + backward is slower than the fp32 one at short sequences. SmolLM2's 9 heads (3 key/value
heads), each path as training calls it (bf16 with transformers' repeated key/value heads, fp32
reading them shared, see below): 8 x 128 tokens 17.5 ms bf16 against 7.9 ms fp32, 8 x 256 37.2
against 29.0, 4 x 512 61.5 against 58.8, while at 2 x 1024 bf16 wins (94.3 against 111.7).
So the choice is measured once, at the run's own shape, the same two ways; in fp32,
q, k and v are cast up for the attention call only (autocast off inside it) and its output goes
back to the autocast dtype. The fp32 kernel is no less precise than the bf16 one. With a
training batch's mask, transformers copies each key/value head for the query heads that share
it (`repeat_kv`; SmolLM2 has 3 for 9) and sums their gradients back; the fp32 path lets the
kernel read the shared heads instead (`enable_gqa`): 8.5 against 9.9 ms forward + backward a
layer at 8 x 128, the same output.

**Dropout masks.** torch's CPU dropout draws one Bernoulli number per element through a scalar
loop (MKL's vectorized generator is used on Intel CPUs only): 4.3 ms forward + backward for a
LoRA input of 8 x 128 x 576, 60 of them per SmolLM2 step. `FastDropout` takes 16 random bits per
element from 64-bit draws, a quarter as many calls to the generator: 2.4 ms. The rate is p
rounded to 1/32768 (0.05 -> 0.049988), the kept values scaled to keep the expectation, and the
draws come from torch's generator, so seeds and resumed runs stay exact.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

FP32_SDPA = "museforge_sdpa_fp32"
_SDPA_GQA = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 5)  # sdpa's enable_gqa


def _sdpa_fp32(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """transformers' sdpa attention computed in fp32; the output in the query's dtype."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = query.dtype
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    if isinstance(kwargs.get("position_bias"), torch.Tensor):
        kwargs["position_bias"] = kwargs["position_bias"].float()
    groups = getattr(module, "num_key_value_groups", 1) if _SDPA_GQA else 1
    q, k, v = query.float(), key.float(), value.float()
    with torch.autocast(query.device.type, enabled=False):
        if groups > 1 and attention_mask is not None and query.shape[2] > 1 \
                and all(kwargs.get(name) is None or kwargs.get(name) is False for name in _SPECIAL):
            # a training batch's mask with grouped key/value heads: the kernel reads the shared
            # heads (`enable_gqa`) instead of transformers' copies (`repeat_kv`), see above
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=kwargs.get("dropout", 0.0),
                                                 scale=kwargs.get("scaling"), enable_gqa=True)
            return out.transpose(1, 2).contiguous().to(dtype), None
        out, weights = sdpa_attention_forward(module, q, k, v, attention_mask, **kwargs)
    return out.to(dtype), weights


# arguments of transformers' sdpa attention that the grouped path above leaves to it (`is_causal`
# does not matter: with a mask transformers never sets it)
_SPECIAL = ("position_bias", "softcap", "output_attentions")


def _seconds(dtype: torch.dtype, shape: tuple[int, int, int, int], kv_heads: int | None = None, repeats: int = 3) -> float:
    """Best time of sdpa forward + backward on random inputs of `shape` [B, H, T, D] with
    `kv_heads` key/value heads, called as each path calls it in training: under `dtype` autocast
    with the key/value heads repeated (transformers), or for fp32 reading them shared (museforge),
    with the loop's additive fp32 mask."""
    b, h, t, d = shape
    kv = kv_heads or h
    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, h, t, d, generator=g).to(dtype).requires_grad_()
    k, v = (torch.randn(b, kv, t, d, generator=g).to(dtype).requires_grad_() for _ in range(2))
    shared = kv < h and dtype == torch.float32 and _SDPA_GQA
    mask = torch.zeros(b, 1, t, t).masked_fill_(~torch.ones(t, t, dtype=torch.bool).tril(), torch.finfo(torch.float32).min)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            if shared:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
            else:
                out = F.scaled_dot_product_attention(q, k.repeat_interleave(h // kv, 1), v.repeat_interleave(h // kv, 1),
                                                     attn_mask=mask)
        out.float().sum().backward()
        best = min(best, time.perf_counter() - start)
    return best


def applies(model: nn.Module) -> bool:
    """Whether the model computes attention with transformers' sdpa on a CPU (what fp32 attention replaces)."""
    return (getattr(model.config, "_attn_implementation", None) in ("sdpa", FP32_SDPA)
            and next(model.parameters()).device.type == "cpu")


def faster_in_fp32(model: nn.Module, batch: int, block: int, dtype: torch.dtype) -> bool:
    """Whether this CPU runs the model's sdpa attention (forward + backward) faster in fp32 than
    in `dtype` at this batch and block size (False for other attention or another device)."""
    c = model.config
    if not applies(model):
        return False
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    shape = (min(batch, 4), heads, block, head_dim)  # a few sequences tell the ratio
    low = min(_seconds(dtype, shape, kv_heads) for _ in range(2))
    high = min(_seconds(torch.float32, shape, kv_heads) for _ in range(2))
    return high < low


def use_fp32_attention(model: nn.Module) -> None:
    """Compute the model's attention in fp32 under autocast (transformers' sdpa, q/k/v cast up)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(FP32_SDPA, _sdpa_fp32)
    AttentionMaskInterface.register(FP32_SDPA, sdpa_mask)  # padding masks are built as for sdpa
    model.set_attn_implementation(FP32_SDPA)


class FastDropout(nn.Dropout):
    """nn.Dropout with masks from 15 random bits per element on CPU (see the module docstring);
    elsewhere, and in eval mode, exactly nn.Dropout."""

    LEVELS = 1 << 15

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cut = round(self.p * self.LEVELS)
        if not self.training or x.device.type != "cpu" or not 0 < cut < self.LEVELS or self.inplace:
            return super().forward(x)  # (also a p too close to 0 or 1 for 15 bits)
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()  # 63 random bits each
        draws = bits.view(torch.int16)[:n].view(x.shape) & (self.LEVELS - 1)  # 4 uniform 15-bit numbers per draw
        return x * (draws >= cut).to(x.dtype).mul_(self.LEVELS / (self.LEVELS - cut))


def use_fast_dropout(model: nn.Module) -> int:
    """Turn every nn.Dropout of the model (LoRA's included) into a FastDropout; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Dropout:
            module.__class__ = FastDropout  # same fields, same state: only forward changes
            count += 1
    return count
