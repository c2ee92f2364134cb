"""Shared by the UI tests: a temp dir for Gradio's files, the app on tiny models, a launched server.

The melody tab runs on the real melody task when src/museforge/tasks/melody.py exists and a tiny
melody model can be built; until then on `StandInMelodyGenerator`, which keeps the Melody
contract (save/save_audio/piano_roll/provenance) with museforge.music's real renderer.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
from pathlib import Path
from typing import Any

# Gradio reads its temp dir at import time: keep the tests' files out of the user's cache.
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="museforge-ui-test-"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = "stand-in-melody"


class StandInMelody:
    """A few bars of a scale in the requested key/tempo: the Melody contract, nothing more."""

    def __init__(self, score, provenance: dict[str, Any]):
        self.score, self.provenance = score, provenance

    def save(self, path):
        self.score.dump_midi(str(path))
        return Path(path)

    def save_audio(self, path, sample_rate: int = 22050):
        from museforge.music.render import synthesize, write_wav

        return write_wav(synthesize(self.score, sample_rate)[0], sample_rate, path)

    def audio(self, sample_rate: int = 22050):
        from museforge.music.render import synthesize

        return synthesize(self.score, sample_rate)

    def piano_roll(self, path):
        from museforge.music.render import piano_roll_png

        return piano_roll_png(self.score, path)

    def to_dict(self) -> dict[str, Any]:
        return {"provenance": self.provenance}

    def __str__(self) -> str:
        o = self.provenance["options"]
        return f"{o.get('bars', 4)} bars in {o.get('key', 'C major')}, {o.get('tempo', 120)} bpm"


class StandInMelodyGenerator:
    task = type("T", (), {"name": "melody", "options": ("key", "tempo", "time_signature", "bars", "instrument",
                                                        "primer", "density")})()

    def generate(self, prompt: str = "", **kw: Any):
        from symusic import Note, Score, Tempo, TimeSignature, Track

        from museforge.music.tokenizer import parse_key

        unknown = [k for k in kw if k not in self.task.options and k not in
                   ("temperature", "top_p", "top_k", "repetition_penalty", "seed", "num_return_sequences")]
        if unknown:
            raise TypeError(f"unknown argument '{unknown[0]}' for melody")
        tonic, mode = parse_key(kw.get("key", "C major"))
        score = Score(480)
        if kw.get("primer"):
            score = Score(kw["primer"])  # a corrupt file raises here, as the real task would
        score.tempos.append(Tempo(0, float(kw.get("tempo", 120))))
        score.time_signatures.append(TimeSignature(0, 4, 4))
        track = Track(name="melody", program=0)
        rng = random.Random(kw.get("seed", 0))
        steps = [0, 2, 3, 5, 7, 8, 10, 12] if mode == "minor" else [0, 2, 4, 5, 7, 9, 11, 12]
        start = max((n.end for t in score.tracks for n in t.notes), default=0)
        for i in range(4 * int(kw.get("bars", 4))):
            track.notes.append(Note(start + i * 480, 480, 60 + tonic + rng.choice(steps), 90))
        score.tracks.append(track)
        prov = {"model": STAND_IN, "task": "melody", "seed": kw.get("seed"),
                "options": {k: v for k, v in kw.items() if k in self.task.options}}
        n = int(kw.get("num_return_sequences", 1))
        out = [StandInMelody(score, prov) for _ in range(n)]
        return out[0] if n == 1 else out


def loader(task: str, model: str, style: str):
    """The app's model loader, with the stand-in melody model when the real task is absent."""
    if task == "melody" and model == STAND_IN:
        return StandInMelodyGenerator()
    from museforge.generate import load_generator

    return load_generator(task, model, style)


def melody_model() -> str:
    """The melody model the UI tests use (the stand-in until tasks/melody.py lands)."""
    return STAND_IN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_app(model_dir, runs_dir, **kw: Any):
    from museforge.ui import build_app

    return build_app(model=str(model_dir), melody_model=melody_model(), loader=loader, runs_dir=runs_dir, **kw)


def launch(model_dir, runs_dir, **kw: Any):
    """Start the app on a free loopback port; returns (demo, url). Call demo.close() when done."""
    demo = make_app(model_dir, runs_dir, **kw)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"
