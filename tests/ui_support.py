"""Shared by the UI tests: a temp dir for Gradio's files, the app on tiny models, a launched server."""

from __future__ import annotations

import functools
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

# Gradio reads its temp dir at import time: keep the tests' files out of the user's cache.
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="museforge-ui-test-"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def tiny_melody_dir() -> Path:
    """A tiny untrained melody model (2-layer GPT-2 over the REMI vocabulary) saved as a model dir."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from museforge.tasks import get_task

    task = get_task("melody")
    tokenizer = task.new_tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=32, n_layer=2, n_head=2,
                     **task.special_ids(tokenizer))
    path = Path(tempfile.mkdtemp(prefix="museforge-tiny-melody-"))
    GPT2LMHeadModel(cfg).save_pretrained(path)
    task.save_tokenizer(tokenizer, path)
    return path


def write_midi(path: Path, pitches: list[int], bpm: float = 120) -> Path:
    """A one-track melody, one quarter note per pitch."""
    from symusic import Note, Score, Tempo, TimeSignature, Track

    score = Score(480)
    score.tempos.append(Tempo(0, float(bpm)))
    score.time_signatures.append(TimeSignature(0, 4, 4))
    track = Track(name="melody", program=0)
    for i, p in enumerate(pitches):
        track.notes.append(Note(i * 480, 480, p, 90))
    score.tracks.append(track)
    score.dump_midi(str(path))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_app(model_dir, runs_dir, **kw: Any):
    """The app on tiny models: `model_dir` for the text tabs, a tiny melody model for the Melody tab."""
    from museforge.ui import build_app

    return build_app(model=str(model_dir), melody_model=str(tiny_melody_dir()), runs_dir=runs_dir, **kw)


def launch(model_dir, runs_dir, **kw: Any):
    """Start the app on a free loopback port; returns (demo, url). Call demo.close() when done."""
    demo = make_app(model_dir, runs_dir, **kw)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"
