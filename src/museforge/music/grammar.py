"""Constrained REMI decoding: every sampled sequence is a valid melody.

    model.generate(prompt_ids, logits_processor=LogitsProcessorList(
        [RemiGrammarProcessor(tok, max_bars=8, scale_bias=2.0)]), do_sample=True)

:class:`RemiGrammarProcessor` sets to -inf the logits of tokens that cannot follow the
sequence so far. Most of the grammar is a [vocab, vocab] boolean matrix of allowed
successors by token type, indexed by the last token (one for the conditioning prefix,
one for the body). A few rules need the sequence, and are computed per row with tensor
ops over the batch:

* prefix: ``BOS Key Tempo TimeSig Program Density`` in this order, then ``Bar``;
* body: ``Bar TimeSig (Position [Tempo] Pitch Velocity Duration)* ...``, then ``EOS``,
  then only ``PAD``; no conditioning or BOS token after the prefix;
* every body ``TimeSig`` and ``Tempo`` repeats the prefix's, when the prefix has one;
* positions strictly increase within a bar and stay inside the bar's metre;
* the first bar holds a note and ``EOS`` only follows a note's ``Duration``, so every
  sequence that reaches ``EOS`` (or is cut after its first note) decodes to notes;
* ``monophonic`` (default) forbids a second ``Pitch`` at the same position;
* ``min_bars``/``max_bars`` bound the bar count (``EOS`` comes after the last bar);
* ``scale_bias`` subtracts a constant from the logits of pitches outside the prefix's key.

:class:`StopAfterBars` is a ``StoppingCriteria`` for generation without the grammar.
"""

from __future__ import annotations

import numpy as np
import torch
from miditok import MusicTokenizer
from transformers import LogitsProcessor, StoppingCriteria

from museforge.music.tokenizer import parse_key

_PREFIX_NEXT = {
    "BOS": ["Key"],
    "Key": ["Tempo"],
    "Tempo": ["TimeSig"],
    "TimeSig": ["Program"],
    "Program": ["Density"],
    "Density": ["Bar"],
}
_BODY_NEXT = {
    "Bar": ["TimeSig"],
    "TimeSig": ["Position", "Bar"],
    "Position": ["Tempo", "Pitch"],
    "Tempo": ["Pitch"],
    "Pitch": ["Velocity"],
    "Velocity": ["Duration"],
    "Duration": ["Position", "Bar", "EOS"],
    "EOS": ["PAD"],
    "PAD": ["PAD"],
}
_SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10]}


def _first(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first True per row (0 where none)."""
    return mask.int().argmax(dim=1)


def _pad(mask: torch.Tensor, extra: int) -> torch.Tensor:
    """Append ``extra`` False columns."""
    return torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], dim=1) if extra else mask


def _last(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last True per row (seq_len - 1 where none)."""
    return mask.shape[1] - 1 - mask.flip(1).int().argmax(dim=1)


class RemiGrammarProcessor(LogitsProcessor):
    """Mask tokens that would make a museforge REMI sequence invalid (see module docstring).

    Args:
        tokenizer: the tokenizer of :func:`museforge.music.make_tokenizer` (or one
            loaded from a run).
        monophonic: allow one note per position only.
        min_bars: forbid ``EOS`` before this many bars.
        max_bars: forbid a new ``Bar`` after this many; the sequence then ends with EOS.
        scale_bias: logit penalty for pitches outside the prefix's key (0 disables).
    """

    def __init__(
        self,
        tokenizer: MusicTokenizer,
        monophonic: bool = True,
        min_bars: int | None = None,
        max_bars: int | None = None,
        scale_bias: float = 0.0,
    ) -> None:
        if min_bars is not None and max_bars is not None and min_bars > max_bars:
            raise ValueError(f"min_bars ({min_bars}) must not exceed max_bars ({max_bars})")
        if max_bars is not None and max_bars < 1:
            raise ValueError(f"max_bars must be at least 1, got {max_bars}")
        self.min_bars, self.max_bars, self.scale_bias = min_bars, max_bars, float(scale_bias)
        tokens = [tokenizer[i] for i in range(len(tokenizer))]
        types = np.array([t.split("_", 1)[0] for t in tokens])
        values = [t.split("_", 1)[1] for t in tokens]
        body_next = dict(_BODY_NEXT)
        if not monophonic:
            body_next["Duration"] = [*body_next["Duration"], "Pitch"]

        def transitions(table: dict[str, list[str]]) -> torch.Tensor:
            mask = np.zeros((len(tokens), len(tokens)), dtype=bool)
            for prev, nexts in table.items():
                mask[np.ix_(types == prev, np.isin(types, nexts))] = True
            return torch.from_numpy(mask)

        positions_per_beat = tokenizer.config.max_num_pos_per_beat
        bar_positions = np.zeros(len(tokens), dtype=np.int64)  # positions in a bar, per TimeSig
        position = np.full(len(tokens), -1, dtype=np.int64)  # value of each Position token
        out_of_key = np.zeros((len(tokens), len(tokens)), dtype=bool)  # [key token, pitch token]
        pitch_ids = np.flatnonzero(types == "Pitch")
        pitch_pcs = np.array([int(values[i]) % 12 for i in pitch_ids])
        for i, (kind, value) in enumerate(zip(types, values, strict=True)):
            if kind == "TimeSig":
                bar_positions[i] = int(value.split("/")[0]) * positions_per_beat
            elif kind == "Position":
                position[i] = int(value)
            elif kind == "Key":
                tonic, mode = parse_key(value.replace("-", " "))
                scale = [(tonic + step) % 12 for step in _SCALES[mode]]
                out_of_key[i, pitch_ids[~np.isin(pitch_pcs, scale)]] = True
        self._tables = {
            "prefix_next": transitions(_PREFIX_NEXT),
            "body_next": transitions(body_next),
            "bar_positions": torch.from_numpy(bar_positions),
            "position": torch.from_numpy(position),
            "out_of_key": torch.from_numpy(out_of_key),
            **{
                name: torch.from_numpy(types == kind)
                for name, kind in [
                    ("is_ts", "TimeSig"),
                    ("is_tempo", "Tempo"),
                    ("is_key", "Key"),
                    ("is_pitch", "Pitch"),
                    ("is_position", "Position"),
                ]
            },
        }
        self._device_tables: dict[torch.device, dict[str, torch.Tensor]] = {}
        self.vocab_size = len(tokens)
        self.bar_id = tokenizer.vocab["Bar_None"]
        self.eos_id = tokenizer.vocab["EOS_None"]

    def _on(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._device_tables:
            self._device_tables[device] = {k: v.to(device) for k, v in self._tables.items()}
        return self._device_tables[device]

    def allowed(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """Boolean [batch, vocab] mask of the tokens allowed after each row."""
        t = self._on(input_ids.device)
        ids = input_ids.clamp(0, self.vocab_size - 1)
        rows = torch.arange(ids.shape[0], device=ids.device)
        is_bar = ids == self.bar_id
        n_bars = is_bar.sum(1)
        in_body = n_bars > 0
        allowed = torch.where(
            in_body[:, None], t["body_next"][ids[:, -1]], t["prefix_next"][ids[:, -1]]
        )

        # Prefix TimeSig/Tempo: the first of each, when it comes before the first Bar.
        first_bar = torch.where(in_body, _first(is_bar), torch.full_like(n_bars, ids.shape[1]))
        for kind in ("is_ts", "is_tempo"):
            hits = t[kind][ids]
            first = _first(hits)
            fixed = hits.any(1) & (first < first_bar) & in_body
            only = torch.zeros_like(allowed)
            only[rows, ids[rows, first]] = True
            allowed[fixed] &= only[fixed] | ~t[kind][None, :]

        # Positions increase inside the bar and stay within its metre.
        is_ts = t["is_ts"][ids]
        bar_len = torch.where(is_ts.any(1), t["bar_positions"][ids[rows, _last(is_ts)]], 0)
        after_bar = torch.arange(ids.shape[1], device=ids.device)[None, :] > _last(is_bar)[:, None]
        current = torch.where(after_bar & in_body[:, None], t["position"][ids], -1).max(1).values
        pos = t["position"][None, :]
        allowed &= ~t["is_position"][None, :] | (
            (pos > current[:, None]) & (pos < bar_len[:, None])
        )

        # The first bar holds a note; EOS needs a note; bar count limits.
        no_note = ~t["is_pitch"][ids].any(1)
        allowed[:, self.bar_id] &= ~(no_note & in_body)
        if self.max_bars is not None:
            allowed[:, self.bar_id] &= n_bars < self.max_bars
        if self.min_bars is not None:
            allowed[:, self.eos_id] &= n_bars >= self.min_bars
        dead = ~allowed.any(1)
        allowed[dead, self.eos_id] = True  # never leave a row with nothing to sample
        return allowed

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Return ``scores`` with disallowed tokens at -inf (and out-of-key pitches biased)."""
        extra = scores.shape[1] - self.vocab_size  # a model may pad its embedding matrix
        if extra < 0:
            raise ValueError(
                f"the model scores {scores.shape[1]} tokens but the tokenizer has {self.vocab_size}; "
                "resize the model's embeddings to the tokenizer"
            )
        allowed = _pad(self.allowed(input_ids), extra)
        if self.scale_bias:
            t = self._on(input_ids.device)
            is_key = t["is_key"][input_ids.clamp(0, self.vocab_size - 1)]
            key = input_ids[torch.arange(len(input_ids)), _first(is_key)].clamp(
                0, self.vocab_size - 1
            )
            penalty = _pad(t["out_of_key"][key] & is_key.any(1)[:, None], extra)
            scores = scores - self.scale_bias * penalty.to(scores.dtype)
        return scores.masked_fill(~allowed, float("-inf"))


class StopAfterBars(StoppingCriteria):
    """Stop a row once it has started ``n + 1`` bars, i.e. after ``n`` complete bars.

    The generated sequence then ends with one extra ``Bar_None`` token, which decodes to
    nothing. With :class:`RemiGrammarProcessor` prefer ``max_bars=n``, which ends on EOS.
    """

    def __init__(self, tokenizer: MusicTokenizer, n: int) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1 bar, got {n}")
        self.bar_id, self.n = tokenizer.vocab["Bar_None"], n

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object
    ) -> torch.BoolTensor:
        """Per-row bool: True where the row is done."""
        return (input_ids == self.bar_id).sum(1) > self.n
