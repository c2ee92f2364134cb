"""A lean decoding forward for Llama-family models on CPU: same logits, less work per token.

    gen = museforge.load_generator("lyrics")   # installed by default for Llama models on CPU bf16
    gen.source["kernels"]                      # "onednn-packed-bf16+lean-llama"

Decoding a 135M model one token at a time on a CPU spends as much time on the ~1,350 small
operations and Python calls around the matrix products as on the products themselves
(docs/performance.md). `LeanLlama` computes transformers' LlamaForCausalLM with the same
arithmetic, in the same order, on the same numbers (rotate_half's negation moved onto sin,
which rounding keeps exact), but without the module machinery, with
q/k/v and gate/up each fused into one matrix product (concatenated rows: every output element
is the same dot product), with a key/value cache written in place instead of grown by
concatenation, and with a chunk of several new tokens (prompt-lookup candidates) computed
exactly as if they had been decoded one by one (attention a row at a time; products whose
kernel rounds several rows differently from one take the rows one at a time; the prompt and
the first proposals, which transformers sends in one call, computed as a prompt and a chunk).
Its logits are checked to be bit-identical to the model's own forward when it is installed;
where they are not (another torch, another attention implementation), nothing is installed.

transformers' `generate` still runs the loop (sampling, processors, stopping, streaming): only
the model's forward is replaced, and any call it does not cover (training, gradients, padding
masks, embeddings input, other caches) goes to the model's own forward.

One exception to bit-identity, asked for by the cache itself: a cache marked with `GROUPED`
(museforge's shared-prompt line candidates, whose rows are not promised to be transformers'
own, see Generator.complete_ids) computes a one-token step's attention with the query heads of
each key/value head as the rows of one query, instead of torch's grouped-query path: 4-6x
faster at 100-400 cached tokens (batch 8: 0.18 against 0.96 ms a layer at 250), the same
output to the last bf16 bit in most calls and one bit off in some.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

# transformers 5.24 renamed `past_key_values` to `cache` (argument and output field): follow the installed one
CACHE_ARG = "cache" if "cache" in inspect.signature(CausalLMOutputWithPast).parameters else "past_key_values"
GROUPED = "museforge_grouped_attention"  # a cache attribute: its one-token steps may group query heads (see above)
_LEAN_KEYS = {"input_ids", "attention_mask", "position_ids", "cache_position", CACHE_ARG, "use_cache", "return_dict", "logits_to_keep",
              "output_attentions", "output_hidden_states"}


class _Part(nn.Module):
    """Output columns [start, stop) of a fused projection, so the model's own forward still works."""

    def __init__(self, fused: nn.Module, start: int, stop: int):
        super().__init__()
        object.__setattr__(self, "fused", fused)  # a reference, not a submodule: the fused layer has one home
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused(x)[..., self.start:self.stop].contiguous()


def _fuse(*layers: nn.Linear) -> nn.Linear:
    w = torch.cat([layer.weight.detach() for layer in layers])
    bias = None if layers[0].bias is None else torch.cat([layer.bias.detach() for layer in layers])
    fused = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, device="meta")  # no random init
    fused.weight = nn.Parameter(w, requires_grad=False)
    if bias is not None:
        fused.bias = nn.Parameter(bias, requires_grad=False)
    return fused


def supports(model: nn.Module) -> bool:
    """A Llama-architecture causal LM whose layers this forward reproduces exactly."""
    if type(model).__name__ != "LlamaForCausalLM":
        return False
    c = model.config
    rope = (getattr(c, "rope_parameters", None) or {}).get("rope_type", "default")
    return (c.hidden_act == "silu" and rope == "default" and getattr(c, "pretraining_tp", 1) == 1
            and getattr(c, "_attn_implementation", "sdpa") == "sdpa" and not getattr(c, "mlp_bias", False)
            and next(model.parameters()).device.type == "cpu")


class LeanLlama:
    """The lean forward of one LlamaForCausalLM (see the module docstring)."""

    def __init__(self, model: nn.Module, kernel: Callable[[nn.Module], nn.Module]):
        c, core = model.config, model.model
        self.model, self.own_forward = model, model.forward
        self.h, self.kv, self.d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.inter, self.scale = c.intermediate_size, c.head_dim ** -0.5
        self.embed, self.inv_freq = core.embed_tokens.weight, core.rotary_emb.inv_freq
        self.rope_scaling = core.rotary_emb.attention_scaling
        self.norm = (core.norm.weight, core.norm.variance_epsilon)
        self.layers = []
        for layer in core.layers:
            a, m = layer.self_attn, layer.mlp
            qkv, gate_up = kernel(_fuse(a.q_proj, a.k_proj, a.v_proj)), kernel(_fuse(m.gate_proj, m.up_proj))
            self.layers.append((layer.input_layernorm, qkv, kernel(a.o_proj), layer.post_attention_layernorm,
                                gate_up, kernel(m.down_proj)))
        self.head = kernel(model.lm_head)
        # what the loop reads per layer: norm weights and epsilons, and the products' forward
        # methods (called directly: nn.Module's call machinery costs ~4 us, 121 times a token)
        self.steps = [(n1.weight, n1.variance_epsilon, qkv.forward, o.forward, n2.weight, n2.variance_epsilon,
                       gate_up.forward, down.forward) for n1, qkv, o, n2, gate_up, down in self.layers]
        # which products (qkv, o, gate_up, down; the head) must compute a chunk's rows one at a time
        first = dict(zip(("qkv", "o", "gate_up", "down"), (self.layers[0][i] for i in (1, 2, 4, 5)), strict=True))
        self.by_row = {name: _rows_depend_on_count(product, self.embed.dtype)
                       for name, product in {**first, "head": self.head}.items()}

    # ---- installing ---------------------------------------------------------------------------
    def install(self) -> None:
        """Route the model's forward here; its own layers become views of the fused ones."""
        q, k = self.h * self.d, self.kv * self.d
        for layer, (_, qkv, o, _, gate_up, down) in zip(self.model.model.layers, self.layers, strict=True):
            a, m = layer.self_attn, layer.mlp
            a.qkv_proj, m.gate_up_proj = qkv, gate_up
            a.q_proj, a.k_proj, a.v_proj = _Part(qkv, 0, q), _Part(qkv, q, q + k), _Part(qkv, q + k, q + 2 * k)
            a.o_proj, m.down_proj = o, down
            m.gate_proj, m.up_proj = _Part(gate_up, 0, self.inter), _Part(gate_up, self.inter, 2 * self.inter)
        self.model.lm_head = self.head

        def forward(*args: Any, **kw: Any):
            return self.forward(*args, **kw)

        forward.lean = self  # type: ignore[attr-defined]
        self.model.forward = functools.update_wrapper(forward, self.own_forward)  # same signature for generate

    # ---- the forward ----------------------------------------------------------------------------
    def covers(self, args: tuple, kw: dict[str, Any]) -> bool:
        """Whether this call is plain cached decoding, the only kind the lean path computes."""
        if args or not _LEAN_KEYS.issuperset(kw) or torch.is_grad_enabled() or self.model.training:
            return False
        ids, cache, mask, positions = kw.get("input_ids"), kw.get(CACHE_ARG), kw.get("attention_mask"), kw.get("position_ids")
        if ids is None or ids.dim() != 2 or kw.get("use_cache") is False:
            return False
        if kw.get("output_attentions") or kw.get("output_hidden_states"):
            return False
        if (type(cache) is not DynamicCache or len(cache.layers) != len(self.layers)
                or any(type(layer) is not DynamicLayer for layer in cache.layers)):
            return False
        (b, t), n = ids.shape, cache.get_seq_length()
        expected = torch.arange(n, n + t, device=ids.device)
        if positions is not None and not torch.equal(positions, expected.expand(b, t)):
            return False  # left padding, or positions of the caller's own
        if kw.get("cache_position") is not None and not torch.equal(kw["cache_position"], expected):
            return False  # (older transformers pass cache positions as well)
        return mask is None or (mask.shape == (b, n + t) and bool(mask.all()))

    def forward(self, *args: Any, **kw: Any):
        if not self.covers(args, kw):
            return self.own_forward(*args, **kw)
        ids, cache = kw["input_ids"], kw[CACHE_ARG]
        t = ids.shape[1]
        keys, values, n = self._buffers(cache, ids.shape[0], t)
        keep = kw.get("logits_to_keep") if kw.get("logits_to_keep") is not None else 0
        if n == 0 and isinstance(keep, int) and 1 < keep < t:
            # transformers' prompt lookup sends the prompt and its first proposals in one call, asking
            # for the logits of the last prompt token and of each proposal: computed as plain decoding
            # would, the prompt as one call and then the proposals as a chunk after it
            p = t - keep + 1
            h = torch.cat([self._layers(ids[:, :p], keys, values, 0)[:, -1:],
                           self._layers(ids[:, p:], keys, values, p)], 1)
            one_at_a_time = self.by_row["head"]
        else:
            h = self._layers(ids, keys, values, n, grouped=getattr(cache, GROUPED, False))
            h = h[:, keep] if not isinstance(keep, int) else h[:, -keep:] if keep else h
            one_at_a_time = self.by_row["head"] and n > 0 and h.shape[1] > 1
        logits = _rows(self.head, _rms(h, *self.norm), one_at_a_time)
        for layer, k, v in zip(cache.layers, keys, values, strict=True):  # the cache stays a valid DynamicCache
            if not layer.is_initialized:
                layer.device, layer.is_initialized = k.device, True
            layer.keys, layer.values = k[:, :, : n + t], v[:, :, : n + t]
        return CausalLMOutputWithPast(logits=logits, **{CACHE_ARG: cache})

    def _layers(self, ids: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor], n: int,
                grouped: bool = False) -> torch.Tensor:
        b, t = ids.shape
        H, KV, D, inter = self.h, self.kv, self.d, self.inter
        by_row = self.by_row if n and t > 1 else dict.fromkeys(self.by_row, False)  # a chunk after the prompt
        h = F.embedding(ids, self.embed)
        # rotary embedding, as LlamaRotaryEmbedding computes it
        freqs = torch.arange(n, n + t, device=ids.device)[None, :, None].float() * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * self.rope_scaling).to(h.dtype)[:, None]
        sin = (emb.sin() * self.rope_scaling).to(h.dtype)[:, None]
        # rotate_half(x) * sin is cat(-x2, x1) * sin; here cat(x2, x1) (a roll) times sin with its
        # first half negated: each product is the same up to its sign, which rounding keeps exact
        sin = torch.cat((-sin[..., : D // 2], sin[..., D // 2:]), dim=-1)
        for (w1, eps1, qkv_proj, o_proj, w2, eps2, gate_up_proj, down_proj), kc, vc in zip(self.steps, keys, values,
                                                                                           strict=True):
            qkv = _rows(qkv_proj, _rms(h, w1, eps1), by_row["qkv"]).view(b, t, H + 2 * KV, D).transpose(1, 2)
            qk, v = qkv.split_with_sizes((H + KV, KV), 1)  # queries and keys rotate together
            qk = (qk * cos) + (qk.roll(D // 2, -1) * sin)
            q, k = qk.split_with_sizes((H, KV), 1)
            kc.narrow(2, n, t).copy_(k)
            vc.narrow(2, n, t).copy_(v)
            if n == 0:  # the prompt: causal attention over itself
                o = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1, scale=self.scale, enable_gqa=True)
            elif t == 1 and grouped:  # query head h reads key/value head h // (H / KV), as in enable_gqa
                o = F.scaled_dot_product_attention(q.reshape(b, KV, H // KV, D), kc.narrow(2, 0, n + 1),
                                                   vc.narrow(2, 0, n + 1), scale=self.scale).reshape(b, H, 1, D)
            elif t == 1:
                o = F.scaled_dot_product_attention(q, kc.narrow(2, 0, n + 1), vc.narrow(2, 0, n + 1), scale=self.scale,
                                                   enable_gqa=True)
            else:  # each new token attends to the cache up to itself, as it would when decoded alone
                o = torch.cat([F.scaled_dot_product_attention(q[:, :, i: i + 1], kc.narrow(2, 0, n + i + 1),
                                                              vc.narrow(2, 0, n + i + 1), scale=self.scale, enable_gqa=True)
                               for i in range(t)], dim=2)
            h = h + _rows(o_proj, o.transpose(1, 2).reshape(b, t, H * D), by_row["o"])
            gate, up = _rows(gate_up_proj, _rms(h, w2, eps2), by_row["gate_up"]).split_with_sizes((inter, inter), -1)
            h = h + _rows(down_proj, F.silu(gate) * up, by_row["down"])
        return h

    def _buffers(self, cache: Any, b: int, t: int) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
        """Preallocated key/value buffers for this cache, holding what the cache holds."""
        n = cache.get_seq_length()
        state = getattr(cache, "_museforge_kv", None)
        layer0 = cache.layers[0]
        ours = (state is not None and layer0.is_initialized and layer0.keys.numel()
                and layer0.keys.data_ptr() == state[0][0].data_ptr() and state[0][0].shape[0] == b)
        if ours and n + t <= state[0][0].shape[2]:
            return state[0], state[1], n
        cap = max(2 * (n + t), n + t + 256)
        shape, like = (b, self.kv, cap, self.d), self.embed
        # (positions past those written are never read: attention and the cache's views stop at n + t)
        keys = [torch.empty(shape, dtype=like.dtype, device=like.device) for _ in cache.layers]
        values = [torch.empty(shape, dtype=like.dtype, device=like.device) for _ in cache.layers]
        if n:  # a cache filled elsewhere (or outgrown): copy it in
            for layer, k, v in zip(cache.layers, keys, values, strict=True):
                k[:, :, :n], v[:, :, :n] = layer.keys, layer.values
        cache._museforge_kv = (keys, values)
        return keys, values, n


def _rows(product: nn.Module, x: torch.Tensor, one_at_a_time: bool) -> torch.Tensor:
    """product(x), its rows computed one at a time where the kernel's rows depend on how many there are."""
    return torch.cat([product(r) for r in x.split(1, 1)], 1) if one_at_a_time else product(x)


def _rows_depend_on_count(product: nn.Module, dtype: torch.dtype) -> bool:
    """Whether rows of this product come out differently when several are computed at once.

    oneDNN picks another kernel for several rows on some shapes: for SmolLM2's down projection
    (1536 -> 576, bf16) about one row in eight differed at 4 rows, while its 576-wide products
    never did. A chunk of decoded tokens must be computed as if each came alone, so such
    products take its rows one at a time (the probe: 2, 3, 4 and 8 random rows, four times each)."""
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for rows in (2, 3, 4, 8) * 4:
            x = torch.randn(1, rows, product.in_features, generator=g).to(dtype)
            if not torch.equal(product(x), _rows(product, x, one_at_a_time=True)):
                return True
    return False


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm, operation for operation."""
    h = x.to(torch.float32)
    h = h * h.pow(2).mean(-1, keepdim=True).add_(eps).rsqrt_()  # (in place on the new mean: fewer allocations)
    return weight * h.to(x.dtype)


def lean_decoding(model: nn.Module, kernel: Callable[[nn.Module], nn.Module], exact: bool = True) -> bool:
    """Install the lean forward on `model` (in place) if it supports it; returns whether it did.

    `kernel` turns an nn.Linear into the module that computes it (PackedLinear, Int8Linear).
    With `exact`, the lean logits must equal the model's own forward as it is now, bit for bit,
    decoding one token at a time, for the calls prompt lookup makes (`_check_logits`); otherwise
    the model is left untouched.
    Without (int8), they must equal the model's own forward on the same int8 layers.
    """
    if not supports(model):
        return False
    lean = LeanLlama(model, kernel)
    ids = torch.arange(9, device=model.device)[None] * 97 % model.config.vocab_size
    with torch.inference_mode():
        reference = _check_logits(model.forward, ids, model.config) if exact else None
        saved = _save(model)
        lean.install()
        reference = reference if exact else _check_logits(lean.own_forward, ids, model.config)
        try:
            same = all(torch.equal(a, b) for a, b in zip(_check_logits(model.forward, ids, model.config, chunk=True),
                                                         reference, strict=True))
        except Exception as e:  # noqa: BLE001 - a transformers this forward does not match: keep the model's own
            logging.getLogger(__name__).warning("museforge: lean decoding not installed (%s: %s)", type(e).__name__, e)
            same = False
        if not same:
            _restore(model, saved)
            return False
    return True


def _check_logits(forward: Callable, ids: torch.Tensor, config: Any, chunk: bool = False) -> list[torch.Tensor]:
    """Logits for positions 2-8 of `ids`: a 3-token prompt then one token at a time, or as
    transformers' prompt lookup calls (the prompt with two proposals, one token, a chunk of three),
    which the lean forward must compute exactly as the first."""
    out, kw = [], {CACHE_ARG: DynamicCache(config=config), "use_cache": True}
    if chunk:
        out.extend(forward(input_ids=ids[:, :5], logits_to_keep=3, **kw).logits.unbind(1))
        out.append(forward(input_ids=ids[:, 5:6], **kw).logits[:, -1])
        out.extend(forward(input_ids=ids[:, 6:9], **kw).logits.unbind(1))
    else:
        out.append(forward(input_ids=ids[:, :3], **kw).logits[:, -1])
        out.extend(forward(input_ids=ids[:, i: i + 1], **kw).logits[:, -1] for i in range(3, 9))
    return out


def _save(model: nn.Module) -> list[tuple[nn.Module, str, Any]]:
    saved = [(model, "lm_head", model.lm_head)]
    for layer in model.model.layers:
        a, m = layer.self_attn, layer.mlp
        saved += [(a, name, getattr(a, name)) for name in ("q_proj", "k_proj", "v_proj", "o_proj")]
        saved += [(m, name, getattr(m, name)) for name in ("gate_proj", "up_proj", "down_proj")]
    return saved


def _restore(model: nn.Module, saved: list[tuple[nn.Module, str, Any]]) -> None:
    for owner, name, module in saved:
        setattr(owner, name, module)
    for layer in model.model.layers:
        for owner, name in ((layer.self_attn, "qkv_proj"), (layer.mlp, "gate_up_proj")):
            if name in owner._modules:
                del owner._modules[name]
    model.__dict__.pop("forward", None)
