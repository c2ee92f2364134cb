"""The task contract, and the shared base of the three text tasks.

A task answers four questions: how to read the user's data (`build_datasets`), what the model
sees (`render`: the same format in training and generation), how to decode (`generate`), and
what to measure on samples (`sample_metrics`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from museforge.config import DataConfig, GenerationConfig
from museforge.data import load_documents, split_documents
from museforge.errors import UserError

if TYPE_CHECKING:
    from museforge.generation import Generator, Output


class _Stopped(Exception):
    """A streamed song whose reader has gone: composing stops at the next settled line."""


class Task:
    name: str = ""
    kind: str = "text"
    options: tuple[str, ...] = ()
    """Task-specific keyword arguments accepted by generate()/stream() besides the sampling ones."""
    defaults: dict[str, Any] = {}
    """Sampling defaults that differ from GenerationConfig's for this task."""
    sample_prompts: tuple[str, ...] = ()
    """Prompts used for the sample generations written during training."""
    lookup: bool = False
    """Whether greedy decoding uses prompt lookup by default (Generator.exact_lookup): it pays off
    where texts repeat their own lines (choruses, refrains), and costs time where they do not."""

    def load_tokenizer(self, path: str, trust_remote_code: bool = False):
        raise NotImplementedError

    def check(self, **options: Any) -> None:
        """Raise UserError for a bad option before any model is loaded (the default accepts all)."""

    def new_tokenizer(self, name: str = "default"):
        """The tokenizer for a model trained from scratch (text tasks reuse `name`'s tokenizer)."""
        from museforge.models import resolve

        return self.load_tokenizer(resolve(name, self.name))

    def special_ids(self, tokenizer) -> dict[str, int]:
        """eos/pad/bos ids used for packing and for building a model from scratch."""
        eos = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
        return {"eos_token_id": eos, "pad_token_id": pad, "bos_token_id": bos}

    def build_datasets(self, data: DataConfig, tokenizer) -> tuple[list[list[int]], list[list[int]], dict[str, Any]]:
        """Token documents for training and validation, plus a summary for museforge.json."""
        raise NotImplementedError

    def generate(self, gen: Generator, prompt: str, settings: GenerationConfig, **options: Any) -> list[Output]:
        raise NotImplementedError

    def stream(self, gen: Generator, prompt: str, settings: GenerationConfig, **options: Any) -> Iterator[str]:
        """Yield text as it is produced and return the finished output; the default yields it whole."""
        out = self.generate(gen, prompt, settings, **options)[0]
        yield str(out)
        return out

    def sample_metrics(self, outputs: list[Output]) -> dict[str, float]:
        return {}


IMAGE_OPTIONS = ("image", "vision_model")
"""Options of every text task: write from a picture (a path, a PIL image or a museforge.vision.Seen)."""


class TextTask(Task):
    """Lyrics, poems and stories: documents of text, an instruction prompt, sampled decoding."""

    kind = "text"
    noun = "text"
    instruction = "Write {a} {noun} about {topic}."
    untitled = "Write {a} {noun}."
    options = ("style", "rhyme", "syllables", "rhyme_level", *IMAGE_OPTIONS)
    craft = ("rhyme", "sections", "syllables", "form")
    """Options that switch decoding to line-by-line constrained composition."""

    def check(self, **options: Any) -> None:
        from museforge.text.prosody import RHYME_LEVELS

        if options.get("rhyme_level", "perfect") not in RHYME_LEVELS:
            raise UserError(f"unknown rhyme_level {options['rhyme_level']!r}: use one of {', '.join(RHYME_LEVELS)}")
        if not isinstance(options.get("style", ""), str):
            raise UserError(f"style must be text (e.g. folk), got {options['style']!r}")
        self.spec(**options)  # parses rhyme, sections, syllables and form: the same errors as generation

    def load_tokenizer(self, path: str, trust_remote_code: bool = False):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok

    def instruction_for(self, topic: str = "", style: str = "", noun: str = "", rhyme: str = "",
                        syllables: Any = None, **options: Any) -> str:
        """The request in words (the same words train the model and prompt it)."""
        noun = noun or self.noun
        a = "an" if noun[0] in "aeiou" else "a"
        words = (self.instruction if topic.strip() else self.untitled).format(a=a, noun=noun, topic=topic.strip())
        if style:
            words = words[:-1] + f", in the style: {style}."
        if rhyme and str(rhyme).lower() != "free":
            words += f" Rhyme scheme {rhyme}."
        if syllables:
            words += f" {syllables} syllables per line."
        return words

    def render(self, tokenizer, topic: str = "", text: str | None = None, style: str = "", **options: Any) -> str:
        """The exact string the model sees: the generation prompt, or (with `text`) a training document.

        Models with a chat template (e.g. SmolLM2-Instruct) get their native chat format, so a
        fine-tune teaches the format they already know; others get a plain `### instruction` header.
        """
        instruction = self.instruction_for(topic, style, **options)
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": instruction}]
            if text is None:
                return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            messages.append({"role": "assistant", "content": text})
            return tokenizer.apply_chat_template(messages, tokenize=False)
        header = f"### {instruction}\n"
        return header if text is None else header + text + (tokenizer.eos_token or "")

    def build_datasets(self, data: DataConfig, tokenizer):
        docs = load_documents(data.path, data.text_field, data.title_field, data.style_field, data.style, data.where)
        if data.max_documents:
            docs = docs.select(range(min(data.max_documents, len(docs))))
        if data.val_path:
            train = docs
            val = load_documents(data.val_path, data.text_field, data.title_field, data.style_field, data.style)
        else:
            train, val = split_documents(docs, data.val_fraction, data.seed)

        def encode(row: dict) -> dict:
            text = self.render(tokenizer, row["title"], row["text"], row["style"]).rstrip("\n")
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if not ids or ids[-1] != tokenizer.eos_token_id:  # one end-of-document token per document
                ids.append(tokenizer.eos_token_id)
            return {"input_ids": ids}

        # datasets caches the tokenized result by fingerprint: a second run skips this work.
        train_ids = list(train.map(encode, remove_columns=train.column_names)["input_ids"]) if len(train) else []
        val_ids = list(val.map(encode, remove_columns=val.column_names)["input_ids"]) if len(val) else []
        info = {"documents": {"train": len(train_ids), "validation": len(val_ids)},
                "tokens": {"train": sum(map(len, train_ids)), "validation": sum(map(len, val_ids))},
                "styles": sorted({s for s in docs["style"] if s})}
        return train_ids, val_ids, info

    def spec(self, **options: Any):
        """The FormSpec (sections, rhyme, syllables) the options ask for, or None for free text."""
        return None

    def look(self, prompt: str, options: dict[str, Any]) -> tuple[str, Any]:
        """With an `image` option, identify it and fold what was seen into the topic.

        Returns (topic, Seen or None) and takes image/vision_model out of `options`: the rest of
        the task (rhyme, sections, syllables, form) works on the topic as on any other.
        """
        image, vision_model = options.pop("image", None), options.pop("vision_model", None)
        if image is None:
            if vision_model:
                raise UserError("vision_model= needs image=: pass the picture to look at (--image FILE)")
            return prompt, None
        from museforge.vision import identify

        seen = identify(image, vision_model=vision_model or "default")
        picture = seen.describe()
        topic = (prompt or "").strip().rstrip(".")
        return (f"{topic}, inspired by a photo of {picture}" if topic else picture), seen

    @staticmethod
    def record_seen(outputs: list[Output], prompt: str, seen: Any) -> list[Output]:
        """Outputs keep the user's prompt; metadata["seen"] records what the picture showed, how sure."""
        if seen is not None:
            for o in outputs:
                o.prompt = prompt
                o.metadata["seen"] = seen.to_dict()
                o.provenance["options"].update(image=seen.image, vision_model=seen.model)
        return outputs

    def generate(self, gen: Generator, prompt: str, settings: GenerationConfig, **options: Any) -> list[Output]:
        topic, seen = self.look(prompt, options)
        spec = self.spec(**options)
        if spec is not None:
            outputs = [self.compose(gen, topic, settings, spec, options, sample=i)
                       for i in range(settings.num_return_sequences)]
        else:
            texts = gen.complete(self.render(gen.tokenizer, topic, **options), settings)
            outputs = [gen.output(t.strip(), topic, settings, self.name, options) for t in texts]
        return self.record_seen(outputs, prompt, seen)

    def stream(self, gen: Generator, prompt: str, settings: GenerationConfig, **options: Any) -> Iterator[str]:
        topic, seen = self.look(prompt, options)
        out = yield from self._stream(gen, topic, settings, options)
        return self.record_seen([out], prompt, seen)[0]

    def _stream(self, gen: Generator, prompt: str, settings: GenerationConfig, options: dict[str, Any]) -> Iterator[str]:
        spec = self.spec(**options)
        if spec is None:
            chunks = []
            for chunk in gen.stream_text(self.render(gen.tokenizer, prompt, **options), settings):
                chunks.append(chunk)
                yield chunk
            return gen.output("".join(chunks).strip(), prompt, settings, self.name, options)
        # Constrained songs are settled line by line: stream each line as it is chosen.
        import queue
        import threading

        lines: queue.Queue = queue.Queue()
        result: list[Any] = []
        stop = threading.Event()  # set when the reader closes the stream (the app's Stop, a closed tab)

        def on_line(*item: Any) -> None:
            if stop.is_set():
                raise _Stopped  # the reader has gone: stop, and free the model for the next request
            lines.put(item)

        def work() -> None:
            try:
                result.append(self.compose(gen, prompt, settings, spec, options, on_line=on_line))
            except _Stopped:
                result.append(None)
            except BaseException as e:
                result.append(e)
            lines.put(None)

        threading.Thread(target=work, daemon=True).start()
        last_tag, first = None, True
        try:
            while (item := lines.get()) is not None:
                tag, line = item
                head = ""
                if tag != last_tag:
                    head = ("" if first else "\n\n") + (f"[{tag}]\n" if tag else "")
                    last_tag = tag
                elif not first:
                    head = "\n"
                first = False
                yield head + line
        finally:
            stop.set()
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def compose(self, gen: Generator, prompt: str, settings: GenerationConfig, spec, options: dict[str, Any],
                sample: int = 0, on_line=None) -> Output:
        """Write `spec` line by line: sample candidate lines, keep the ones that rhyme and scan.

        Unmet constraints (no rhyme found within the budget) are reported in the output's
        metadata["failures"], never silently dropped.
        """
        from museforge.text.constrained import compose
        from museforge.text.forms import render_song
        from museforge.text.metrics import text_metrics

        level = options.get("rhyme_level", "perfect")
        prefix = self.render(gen.tokenizer, prompt, **options)
        seed = settings.seed + 1000 * sample
        sampling = {"seed": seed, "temperature": settings.temperature or 0.8, "top_p": settings.top_p,
                    "top_k": settings.top_k, "repetition_penalty": settings.repetition_penalty}
        sections, meta = compose(gen.sample_lines, spec, prefix, budget=4, k=8, rng=seed,
                                 tokenizer=gen.tokenizer, level=level, sampling=sampling, on_line=on_line)
        text = render_song(sections)
        meta = {"form": spec.name, "rhyme": spec.rhyme, "constraints_met": not meta["failures"], **meta,
                "metrics": text_metrics(text, form=spec)}
        return gen.output(text, prompt, settings, self.name, options, meta)

    def sample_metrics(self, outputs: list[Output]) -> dict[str, float]:
        from museforge.evaluate import text_quality

        return text_quality([str(o) for o in outputs])
