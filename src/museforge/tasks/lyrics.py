"""Song lyrics (rap included).

    museforge generate lyrics "rain on a city night" --rhyme AABB --sections "verse chorus verse chorus" --syllables 8-10

With any of rhyme/sections/syllables the song is composed line by line under those constraints
(see museforge.text.constrained); without them the model writes freely.
"""

from __future__ import annotations

from typing import Any

from museforge.tasks.base import TextTask


class LyricsTask(TextTask):
    name = "lyrics"
    noun = "song lyrics"
    instruction = "Write song lyrics about {topic}."
    untitled = "Write song lyrics."
    options = TextTask.options + ("sections",)
    defaults = {"max_new_tokens": 200}
    sample_prompts = ("rain on a city night", "leaving home")
    lookup = True  # refrains and choruses repeat: see benchmarks/results/lookup.json

    def spec(self, sections: Any = None, rhyme: Any = None, syllables: Any = None, **options: Any):
        if sections is None and rhyme is None and syllables is None:
            return None
        from museforge.text.forms import parse_rhyme, song_form

        scheme = "AABB" if rhyme is None else parse_rhyme(rhyme)
        return song_form(sections or "verse chorus verse chorus", rhyme=scheme, syllables=syllables)

    def instruction_for(self, topic: str = "", style: str = "", sections: Any = None, **options: Any) -> str:
        words = super().instruction_for(topic, style, **options)
        if sections:
            words += f" Structure: {sections if isinstance(sections, str) else ' '.join(sections)}."
        return words
