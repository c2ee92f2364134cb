"""Song lyrics (rap included): `museforge generate lyrics "rain on a city night" --style rap`."""

from __future__ import annotations

from museforge.tasks.base import TextTask


class LyricsTask(TextTask):
    name = "lyrics"
    noun = "song lyrics"
    instruction = "Write song lyrics about {topic}."
    untitled = "Write song lyrics."
    defaults = {"max_new_tokens": 200}
    sample_prompts = ("rain on a city night", "leaving home")
