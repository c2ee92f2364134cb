"""Tasks: a task is data + prompt format + decoding. Everything else (training, generation,
config) is shared. Adding a task = one small file and one line in TASKS.

    from museforge.tasks import get_task
    get_task("poem").render(tokenizer, "the sea")   # the prompt the model sees
"""

from __future__ import annotations

from museforge.errors import UserError
from museforge.tasks.base import Task, TextTask
from museforge.tasks.lyrics import LyricsTask
from museforge.tasks.melody import MelodyTask
from museforge.tasks.poem import PoemTask
from museforge.tasks.story import StoryTask

TASKS: dict[str, Task] = {
    "lyrics": LyricsTask(),
    "poem": PoemTask(),
    "story": StoryTask(),
    "melody": MelodyTask(),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown task '{name}': choose one of {', '.join(TASKS)}") from None


__all__ = ["TASKS", "Task", "TextTask", "get_task"]
