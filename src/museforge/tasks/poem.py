"""Poems.

    museforge generate poem "the sea at dawn" --form sonnet

A form (sonnet, haiku, limerick, ballad, free) fixes lines, rhyme scheme and syllables; rhyme=
and syllables= override them. With none of these the model writes freely.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from museforge.tasks.base import TextTask


class PoemTask(TextTask):
    name = "poem"
    noun = "poem"
    options = TextTask.options + ("form",)
    defaults = {"max_new_tokens": 160}
    sample_prompts = ("the sea at dawn", "an old oak tree")
    lookup = True  # refrains and choruses repeat: see benchmarks/results/lookup.json

    def spec(self, form: str | None = None, rhyme: Any = None, syllables: Any = None, **options: Any):
        if form is None and rhyme is None and syllables is None:
            return None
        from museforge.text.forms import expand_rhyme, parse_rhyme, parse_syllables, poem_form

        spec = poem_form(form or "free")
        if rhyme is None and syllables is None:
            return spec
        scheme, targets = parse_rhyme(rhyme), parse_syllables(syllables)
        sections = tuple(dataclasses.replace(s, rhyme=expand_rhyme(scheme, s.lines) if rhyme is not None else s.rhyme,
                                             syllables=targets if syllables is not None else s.syllables)
                         for s in spec.sections)
        return dataclasses.replace(spec, sections=sections)

    def instruction_for(self, topic: str = "", style: str = "", form: str | None = None, **options: Any) -> str:
        noun = form if form and form != "free" else ""
        return super().instruction_for(topic, style, noun=noun, **options)
