"""Sampling on a CPU that draws exactly the tokens transformers' `do_sample` draws, with less work.

transformers samples a token with its warpers (temperature, top-k, top-p), a softmax and
`torch.multinomial(probs, 1)`. On a CPU that draw takes one Exp(1) number per word of the
vocabulary, q = -log1p(-u) with u from the low 53 bits of the generator's next 64-bit number, and
picks argmax(p / q): 1.0 ms a token at batch 1 and 7.5 ms a step at batch 8 for SmolLM2's 49,152
words (profiled in a real `generate`), though after top-k only ~50 words have p > 0 and only they
can win.

`multinomial` here makes the same draw with the same numbers: it takes the generator's 64-bit
numbers for the whole vocabulary with `random_` (the same numbers `exponential_` takes, so the
generator ends in the same state; 6x faster, no logarithm), computes the exponentials of the words
with p > 0 only, with the C library's `log1p` as torch's kernel does, and divides and picks the
first maximum as torch does. Where torch would pick otherwise, `torch.multinomial` itself draws
from the same generator state: a 53-bit zero anywhere (q = 0, where torch picks a word of
probability 0: about once in 10^15 numbers), a row whose every p / q rounds to 0, and invalid
probabilities (torch's own error); so does a draw where more than 1/32 of the words can win (a
Python log1p each would cost more than torch's draw). The first use checks this arithmetic against torch's own
`exponential_` and `multinomial` (`exact_draws`); where they differ (another torch), sampling stays
transformers' own.

Not done: top-p sorts all 49,152 scores (0.6 ms a token, 2.3 ms at batch 8). Sorting only the finite
scores gives the same cut unless the cut falls between equal scores, whose order in torch's
unstable full sort cannot be reproduced, and with bf16 logits that was 21 of 64 tokens of a song.

`ExactSampler` runs as the last logits processor: it applies transformers' own warpers, draws, and
returns scores of -inf except for the drawn token, over which generate runs greedily, so streaming,
stopping and the caller's processors are unchanged. `Generator.complete_ids` uses it for sampling on
a CPU when the only warpers are temperature, top-k and top-p.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

_LOW53 = (1 << 53) - 1
_SHARE = 32  # the fast draw when at most 1/32 of the words can win; beyond that a Python log1p per word costs more


def _exponentials(low53: torch.Tensor) -> torch.Tensor:
    """torch's CPU Exp(1) numbers (float32) from the low 53 bits of the generator's 64-bit numbers."""
    return torch.tensor([-math.log1p(-(b * 2.0**-53)) for b in low53.tolist()], dtype=torch.float64).float()


def multinomial(probs: torch.Tensor, generator: torch.Generator | None = None,
                numbers: torch.Tensor | None = None) -> torch.Tensor:
    """`torch.multinomial(probs, 1, generator=generator).squeeze(1)` for [batch, vocab] float32 CPU
    probabilities: the same token, and the generator (torch's default one if None) left in the same
    state. `numbers`: an int64 buffer of probs' shape to reuse (a fresh 3 MB one at batch 8 costs
    page faults, ~1.5 ms)."""
    rows = cols = None
    if probs.dim() == 2 and probs.dtype == torch.float32 and probs.is_contiguous() and probs.device.type == "cpu":
        low, high = torch.aminmax(probs)
        if bool(low >= 0) and bool(high < math.inf):  # otherwise torch's own error below
            rows, cols = (probs > 0).nonzero(as_tuple=True)
    if rows is None or not 0 < rows.numel() <= probs.numel() // _SHARE:
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    source = generator if generator is not None else torch.default_generator
    state = source.get_state()
    if numbers is None or numbers.shape != probs.shape:
        numbers = torch.empty(probs.shape, dtype=torch.int64)
    low53 = numbers.random_(generator=source).bitwise_and_(_LOW53)
    counts = torch.bincount(rows, minlength=probs.shape[0])
    best, at = _first_max_per_row(rows, counts, probs[rows, cols] / _exponentials(low53[rows, cols]))
    # torch's own pick where it differs: a row with no word of p > 0 (its error), a 53-bit zero
    # anywhere (q = 0: 0/0 = nan wins torch's argmax), or all p / q of a row rounding to 0
    if bool((counts == 0).any()) or int(low53.min()) == 0 or not bool((best > 0).all()):
        source.set_state(state)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return cols[at]


def _first_max_per_row(rows: torch.Tensor, counts: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's largest value and the index into `values` (grouped by row, rows ascending) of its first occurrence."""
    starts = counts.cumsum(0) - counts
    grid = torch.full((counts.numel(), int(counts.max())), -math.inf, dtype=values.dtype)
    grid[rows, torch.arange(rows.numel()) - starts[rows]] = values
    best, at = grid.max(1)
    return best, starts + at


@functools.cache
def exact_draws() -> bool:
    """Whether this torch's CPU `exponential_` and `multinomial` are the arithmetic `multinomial`
    above reproduces (checked once, on generators of its own: 4,096 numbers, and 64 draws)."""
    g = torch.Generator().manual_seed(1234)
    want = torch.empty(4096).exponential_(generator=g)
    after = g.get_state()
    g = torch.Generator().manual_seed(1234)
    low53 = torch.empty(4096, dtype=torch.int64).random_(generator=g).bitwise_and_(_LOW53)
    if not (torch.equal(_exponentials(low53), want) and torch.equal(g.get_state(), after)):
        return False
    probs = torch.rand(8, 3000, generator=torch.Generator().manual_seed(99)).pow_(8)  # peaked, ~2% above 0
    probs[probs < 0.85] = 0
    probs[:, 0] += 0.5
    probs = probs / probs.sum(1, keepdim=True)
    theirs, ours = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    want = torch.cat([torch.multinomial(probs, 1, generator=theirs).squeeze(1) for _ in range(8)])
    got = torch.cat([multinomial(probs, ours) for _ in range(8)])
    return torch.equal(got, want) and torch.equal(ours.get_state(), theirs.get_state())


class ExactSampler:
    """The last logits processor of a greedy `generate` that samples as `do_sample=True` would with
    these settings (transformers' warpers, a softmax, then `multinomial` above): scores of -inf
    except 0 for the drawn token."""

    def __init__(self, temperature: float | None, top_k: int | None, top_p: float | None):
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        # the warpers transformers adds for these settings, in its order (one beam: keep 1 token)
        self.warpers: list[Any] = []
        if temperature is not None and temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(temperature))
        if top_k is not None and top_k != 0:
            self.warpers.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
        if top_p is not None and top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
        self.numbers = torch.empty(0, dtype=torch.int64)  # the draw's buffer, reused every step
        self.generator: torch.Generator | None = None  # None: torch's global one, as transformers draws

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        if self.numbers.shape != scores.shape or self.numbers.is_inference() != torch.is_inference_mode_enabled():
            self.numbers = torch.empty(scores.shape, dtype=torch.int64)  # (an inference tensor only serves inference mode)
        token = multinomial(torch.nn.functional.softmax(scores, dim=-1), self.generator, numbers=self.numbers)
        out = torch.full_like(scores, -math.inf)
        out[torch.arange(scores.shape[0]), token] = 0.0
        return out


# generate keywords under which transformers does not draw one token a step with multinomial
_OTHER_DECODING = ("prompt_lookup_num_tokens", "assistant_model", "assistant_early_exit", "dola_layers", "use_mtp")


def sampler_for(hf: dict[str, Any], model: Any) -> ExactSampler | None:
    """An ExactSampler for `model.generate(**hf)`, where it draws what transformers would: sampling
    on a CPU, one beam and one sequence per row, no assisted or prompt-lookup decoding, no warpers but
    temperature, top-k and top-p, nothing applied after them, no processed scores asked for, and this
    torch's draws checked (`exact_draws`). A setting missing from `hf` is resolved as transformers
    does: the model's generation config, then transformers' global defaults (top_k=50)."""
    from transformers import GenerationConfig

    config = getattr(model, "generation_config", None)
    defaults = getattr(GenerationConfig, "_get_default_generation_params", dict)()

    def value(name: str) -> Any:
        if name in hf:
            return hf[name]
        own = getattr(config, name, None)
        return own if own is not None else defaults.get(name)

    if not value("do_sample") or (value("num_beams") or 1) > 1 or (value("num_return_sequences") or 1) > 1:
        return None
    if value("output_scores") or any(value(name) for name in _OTHER_DECODING):
        return None
    if next(model.parameters()).device.type != "cpu":
        return None
    other_warpers = (value("min_p") is not None or value("top_h") is not None
                     or (value("typical_p") is not None and value("typical_p") < 1.0)
                     or any(value(name) is not None and 0.0 < value(name) < 1.0 for name in ("epsilon_cutoff", "eta_cutoff")))
    after_warpers = value("watermarking_config") is not None or value("renormalize_logits") is True
    if other_warpers or after_warpers or not exact_draws():
        return None
    return ExactSampler(value("temperature"), value("top_k"), value("top_p"))
