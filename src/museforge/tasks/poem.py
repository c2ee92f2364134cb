"""Poems: `museforge generate poem "the sea at dawn" --form sonnet`."""

from __future__ import annotations

from museforge.tasks.base import TextTask


class PoemTask(TextTask):
    name = "poem"
    noun = "poem"
    defaults = {"max_new_tokens": 160}
    sample_prompts = ("the sea at dawn", "an old oak tree")
