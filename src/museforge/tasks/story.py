"""Short stories: `museforge generate story "a lighthouse keeper finds a message" --length short`."""

from __future__ import annotations

from typing import Any

from museforge.config import GenerationConfig
from museforge.errors import UserError
from museforge.tasks.base import IMAGE_OPTIONS, TextTask

LENGTHS = {"short": 250, "medium": 500, "long": 900}  # max_new_tokens (~0.75 words per token)


class StoryTask(TextTask):
    name = "story"
    noun = "short story"
    options = ("style", "length", *IMAGE_OPTIONS)
    defaults = {"max_new_tokens": LENGTHS["short"]}
    sample_prompts = ("a lighthouse keeper finds a message in a bottle", "a fox who could not sleep")

    def instruction_for(self, topic: str = "", style: str = "", length: str = "", **options: Any) -> str:
        words = super().instruction_for(topic, style)
        return words if not length else words[:-1] + f" ({length})."

    def check(self, length: str = "", **options: Any) -> None:
        super().check(**options)
        self._sized(GenerationConfig(), length)

    def generate(self, gen, prompt: str, settings: GenerationConfig, length: str = "", **options: Any):
        return super().generate(gen, prompt, self._sized(settings, length), length=length, **options)

    def stream(self, gen, prompt: str, settings: GenerationConfig, length: str = "", **options: Any):
        return super().stream(gen, prompt, self._sized(settings, length), length=length, **options)

    @staticmethod
    def _sized(settings: GenerationConfig, length: str) -> GenerationConfig:
        if not length:
            return settings
        if length not in LENGTHS:
            raise UserError(f"unknown story length '{length}': choose {', '.join(LENGTHS)}")
        settings.max_new_tokens = LENGTHS[length]
        return settings
