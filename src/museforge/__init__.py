"""museforge: one toolkit for words and music.

    import museforge
    print(museforge.generate_lyrics("rain on a city night", seed=1))
    print(museforge.generate_story(image="photo.jpg", seed=1))     # a story from a photo
    print(museforge.identify("photo.jpg").description)              # "a cat (91%)"
    gen = museforge.load_generator("poem")            # load once, generate many
    run = museforge.train("configs/tiny.yaml", ["data.path=data/lyrics.txt"])

Heavy libraries (torch, transformers) load on first use, not at import.
"""

from __future__ import annotations

import os
from typing import Any

from museforge.errors import UserError

__version__ = "0.1.0"

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_generators: dict[tuple[str, str, str], Any] = {}


def load_generator(task: str = "lyrics", model: str = "default", style: str = "", **kwargs: Any):
    """A Generator for `task` on `model` (Hub id, local dir, run dir or "default")."""
    from museforge.generation import load_generator as _load

    return _load(task, model, style, **kwargs)


def _cached(task: str, model: str, style: str):
    key = (task, model, style)
    if key not in _generators:  # the one-call helpers reuse a loaded model within a process
        _generators[key] = load_generator(task, model, style)
    return _generators[key]


def generate(task: str, prompt: str = "", model: str = "default", style: str = "", **kwargs: Any):
    """Generate for any task; returns an Output (a Melody for melody), or a list when n > 1.

    Bad arguments raise museforge.UserError (one line naming the input and the fix) before any
    model is loaded."""
    from museforge.generation import check_request

    check_request(task, prompt, **kwargs)
    return _cached(task, model, style).generate(prompt, **kwargs)


def generate_lyrics(topic: str = "", model: str = "default", style: str = "", **kwargs: Any):
    """Song lyrics about `topic`. Sampling keywords as in transformers, plus seed.

    image= (a path or PIL image) writes from a picture too: what is seen joins the topic, and
    output.metadata["seen"] records it with its confidence; vision_model= picks another eye
    (see identify). Rhyme, sections and syllables apply as without an image."""
    return generate("lyrics", topic, model, style, **kwargs)


def generate_poem(topic: str = "", form: str | None = None, model: str = "default", style: str = "", **kwargs: Any):
    """A poem about `topic` (and/or image=, as generate_lyrics)."""
    if form is not None:
        kwargs["form"] = form
    return generate("poem", topic, model, style, **kwargs)


def generate_story(premise: str = "", model: str = "default", style: str = "", **kwargs: Any):
    """A short story from `premise` and/or image= (a photo; as generate_lyrics); length="short"|"medium"|"long"."""
    return generate("story", premise, model, style, **kwargs)


def generate_melody(key: str | None = None, tempo: int | None = None, time_signature: str | None = None,
                    bars: int = 16, instrument: str | int | None = None, primer: str | None = None,
                    model: str = "default", **sampling: Any):
    """A Melody: .save("x.mid"), .audio(), .save_audio(), .piano_roll(), .to_pretty_midi(), .metrics().

    key "D minor", tempo in bpm, time_signature "6/8", bars, instrument (GM name or program
    0-127), primer (a MIDI file to continue for `bars` more bars); sampling keywords as generate().
    """
    return generate("melody", "", model, "", key=key, tempo=tempo, time_signature=time_signature, bars=bars,
                    instrument=instrument, primer=str(primer) if primer else None, **sampling)


def identify(image: Any, top: int = 5, vision_model: str = "default"):
    """What is in an image (a path or PIL image): a museforge.vision.Seen with .labels (top classes
    and probabilities), .description ("a cat (91%)", or "not sure ..."), .mood, .to_dict().

    vision_model: "default" (EfficientNet-Lite0 on ImageNet, shipped), or a Hugging Face
    image-classification or captioning model id or local directory.
    """
    from museforge.vision import identify as _identify

    return _identify(image, top=top, vision_model=vision_model)


def train(config: Any, overrides: list[str] | None = None, **kwargs: Any):
    """Run the training loop; returns the run directory. See museforge.training.train."""
    from museforge.training import train as _train

    return _train(config, overrides, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "TASKS":
        from museforge.tasks import TASKS

        return TASKS
    raise AttributeError(name)


__all__ = ["UserError", "generate", "generate_lyrics", "generate_melody", "generate_poem", "generate_story", "identify", "load_generator",
           "train", "TASKS"]
