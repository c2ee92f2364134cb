"""The causal-LM loss, computed chunk by chunk so the full logits tensor never exists.

    with hidden_states_out(model) as head:
        hidden = model(**batch).logits                 # the output head is bypassed: [B, T, H]
        loss = chunked_lm_loss(hidden, head.weight, batch["labels"])

With SmolLM2's 49,152-token vocabulary, one batch of 8 x 256 tokens has 2048 x 49152 logits:
400 MB in fp32, and the usual path holds several such tensors at once (bf16 logits, their fp32
copy, log-softmax saved for backward, its gradient), about 1.2 GB at the peak of a step. Here
the logits of 256 positions at a time (50 MB fp32) are made, turned into the loss and into the
gradients w.r.t. the hidden states and the head weight right away (the loss is the last node
of the graph, so the gradient is known in the forward pass), then dropped. backward() only
scales the stored gradients. Same arithmetic as `cross_entropy(logits.float(), labels)` under
autocast: logits in the autocast dtype, softmax and loss in fp32.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

CHUNK = 256  # positions per chunk: 256 x 49152 fp32 logits = 50 MB
STASH = 1024  # positions whose softmax gradients make one product for the head's gradient (100 MB in bf16)

# Configuration fields of models that transform logits after the output head (soft-capping,
# scaling): the plain loss below would be wrong for them, so they keep the model's own loss.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def fused_head(model: nn.Module) -> nn.Linear | None:
    """The model's output head when the chunked loss reproduces the model's own loss, else None."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if get else None
    if type(head) is not nn.Linear or head.bias is not None:  # a LoRA-wrapped or biased head: own loss
        return None
    config = getattr(model, "config", None)
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS):
        return None
    return head


@contextmanager
def hidden_states_out(model: nn.Module, head: nn.Linear) -> Iterator[nn.Linear]:
    """Within the block, the model's forward returns its last hidden states as `.logits`."""
    head.forward = lambda x: x  # an instance attribute shadows nn.Linear.forward
    try:
        yield head
    finally:
        del head.forward


def _chunked(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, dtype: torch.dtype, chunk: int,
             want_h: bool = False, want_w: bool = False):
    """Per-position nll of `h @ w.T` against `y` (0 where y is -100), chunk by chunk; with want_*,
    also the gradients of the mean nll w.r.t. h and w (fp32 for w). Products in `dtype`.

    The chunk-sized tensors (logits, softmax) live in buffers made once per call and the softmax
    is computed in place: on a CPU a fresh 25-113 MB tensor costs more in page faults than its
    arithmetic (malloc maps allocations that large anew each time; measured here, an
    out-of-place op on 256 x 49152 floats took 16 ms, in place 0.7 ms). For the head's gradient
    the softmax gradients of up to STASH positions are kept in `dtype` and multiplied at once:
    one product and one cast to fp32 instead of one per chunk."""
    valid = y != -100
    count = valid.sum().clamp(min=1)
    w = w.detach().to(dtype)
    n, vocab = h.shape[0], w.shape[0]
    nll = torch.zeros(y.shape, dtype=torch.float32, device=h.device)
    grad_h = torch.empty_like(h) if want_h else None
    grad_w = None
    group = max(chunk, STASH // chunk * chunk) if want_w else chunk  # positions per head-gradient product
    logits = torch.empty(min(chunk, n), vocab, dtype=torch.float32, device=h.device)
    grads = torch.empty(min(group, n), vocab, dtype=dtype, device=h.device)  # softmax gradients in `dtype`
    with torch.autocast(h.device.type, enabled=False):
        for start in range(0, n, group):
            hg = h[start:start + group].detach().to(dtype)
            for s in range(0, hg.shape[0], chunk):
                hc = hg[s:s + chunk]
                m, at = hc.shape[0], start + s
                keep = valid[at:at + m]
                target = y[at:at + m].clamp(min=0)[:, None]
                z = logits[:m].copy_(torch.mm(hc, w.T, out=grads[s:s + m]))  # `dtype` products, fp32 softmax
                picked = z.gather(1, target)
                top = z.amax(-1, keepdim=True)
                total = z.sub_(top).exp_().sum(-1, keepdim=True)  # z becomes exp(logit - max)
                nll[at:at + m] = (total.log() + top - picked).squeeze(1) * keep
                if want_h or want_w:
                    g = z.div_(total)  # softmax
                    g.scatter_add_(1, target, torch.full_like(target, -1, dtype=g.dtype))
                    g.mul_((keep / count)[:, None])
                    g = grads[s:s + m].copy_(g)
                    if want_h:
                        grad_h[at:at + m] = (g @ w).to(h.dtype)
            if want_w:
                part = grads[:hg.shape[0]].T @ hg
                grad_w = part.float() if grad_w is None else grad_w.add_(part)
    if want_w and grad_w is None:  # no positions at all
        grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
    return nll, count, grad_h, grad_w


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, dtype, chunk):  # noqa: D102  (hidden [N, H], labels [N])
        nll, count, grad_h, grad_w = _chunked(hidden, weight, labels, dtype, chunk, *ctx.needs_input_grad[:2])
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return nll.sum() / count

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        grad_h, grad_w = ctx.saved_tensors
        # in place: the gradients are large (the head's: 113 MB) and training runs this backward
        # once (a second backward through the same graph raises instead of scaling them twice)
        gh = None if grad_h is None else grad_h.mul_(grad_out.to(grad_h.dtype))
        gw = None if grad_w is None else grad_w.mul_(grad_out).to(ctx.weight_dtype)
        return gh, gw, None, None, None


def _shifted(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """Positions [N, H] and their next tokens [N], and the dtype of the head's products (the
    autocast dtype inside autocast, as within the model, else the hidden states' own)."""
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    return hidden[:, :-1].reshape(-1, hidden.shape[-1]), labels[:, 1:].reshape(-1), dtype


def chunked_lm_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """Mean next-token cross-entropy of `hidden @ weight.T` against `labels` shifted by one
    (-100 = ignored), like transformers' causal-LM loss, without materializing all logits."""
    h, y, dtype = _shifted(hidden, labels)
    return _ChunkedCrossEntropy.apply(h, weight, y, dtype, chunk)


@torch.no_grad()
def chunked_token_nll(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """Per-position next-token negative log-likelihood [B, T-1] (0 where the label is -100),
    for evaluation: the same arithmetic as the training loss, no gradients, chunked."""
    h, y, dtype = _shifted(hidden, labels)
    return _chunked(h, weight, y, dtype, chunk)[0].view(labels.shape[0], -1)


def _through_head(model: nn.Module, batch: dict[str, torch.Tensor], head: nn.Linear) -> tuple[torch.Tensor, bool]:
    """The forward pass with the head bypassed: (last hidden states, True), or (logits, False) for
    a model that computes its logits without calling its head module."""
    with hidden_states_out(model, head):
        out = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    return out, out.shape[-1] == head.in_features


def lm_loss(model: nn.Module, batch: dict[str, torch.Tensor], head: nn.Linear | None) -> torch.Tensor:
    """The training loss of a batch with labels: chunked through `head` when given (see
    `fused_head`), else the model's own loss."""
    if head is None:
        return model(**batch).loss
    out, hidden = _through_head(model, batch, head)
    if hidden:
        return chunked_lm_loss(out, head.weight, batch["labels"])
    labels = batch["labels"][:, 1:].reshape(-1)
    return torch.nn.functional.cross_entropy(out[:, :-1].reshape(labels.numel(), -1).float(), labels)


@torch.no_grad()
def lm_token_nll(model: nn.Module, batch: dict[str, torch.Tensor], head: nn.Linear | None) -> torch.Tensor:
    """Per-position next-token nll [B, T-1] of a batch with labels (0 where ignored), for
    evaluation: chunked through `head` when given, else from the model's full logits."""
    if head is not None:
        out, hidden = _through_head(model, batch, head)
        if hidden:
            return chunked_token_nll(out, head.weight, batch["labels"])
    else:
        out = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    return torch.nn.functional.cross_entropy(out[:, :-1].float().transpose(1, 2), batch["labels"][:, 1:],
                                             ignore_index=-100, reduction="none")
