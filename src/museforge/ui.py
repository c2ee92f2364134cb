"""The museforge Gradio app: every task in one page, fine-tuning from the browser.

    museforge demo                      # http://127.0.0.1:7860 (loopback only, no share link)
    python demos/app.py                 # the same; demos/lyrics.py etc. serve one tab each

Thin wiring over the Python API: `Generator.load(...).stream/generate` for the task tabs and
`museforge.training.train(cfg, callback=...)` for the Fine-tune tab. Nothing here knows how to
write a song; it turns widgets into keyword arguments and outputs into widgets.

Sharing between users: loaded models (immutable weights) sit in a small LRU owned by the app;
everything that belongs to one user (their trained runs, their last melody, their stop flag)
lives in a per-session `gr.State` dict. Files the app writes go under GRADIO_TEMP_DIR, which
defaults to museforge's cache (`$MUSEFORGE_CACHE/gradio`), one folder per session.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import queue
import random
import re
import shutil
import sys
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from museforge.models import cache_dir

# Before gradio is imported: it reads these at import time.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("GRADIO_TEMP_DIR", str(cache_dir() / "gradio"))

import gradio as gr  # noqa: E402

log = logging.getLogger("museforge.ui")

TEXT_TASKS = ("lyrics", "poem", "story")
TASK_TABS = (*TEXT_TASKS, "melody")
MAX_PROMPT_CHARS = 1000
MAX_UI_TOKENS = 1024  # the API allows 4096; on a CPU 1024 already takes minutes
MAX_SAMPLES = 8
RHYMES = [("model's choice", ""), ("AABB (couplets)", "AABB"), ("ABAB (alternate)", "ABAB"),
          ("ABCB (ballad)", "ABCB"), ("AAAA (monorhyme)", "AAAA"), ("free (no rhyme)", "free")]
FORMS = [("any (the model writes freely)", ""), ("sonnet", "sonnet"), ("haiku", "haiku"),
         ("limerick", "limerick"), ("ballad", "ballad"), ("free verse", "free")]
LENGTHS = ["short", "medium", "long"]
TIME_SIGNATURES = ["4/4", "3/4", "2/4", "6/8", "5/4", "7/8", "9/8", "12/8"]
TEXT_SUFFIXES = {".txt", ".md", ".jsonl", ".json", ".csv"}
MIDI_SUFFIXES = {".mid", ".midi"}
MAX_UPLOAD = 100 * 2**20  # bytes of one uploaded file (Gradio refuses larger uploads first)
MAX_UNZIPPED = 200 * 2**20  # bytes a training zip may expand to
MAX_ZIP_FILES = 5000  # training files in one zip
MAX_ZIP_RATIO = 100  # text and MIDI deflate 3-10x; a member expanding 100x+ is a zip bomb
LOOPBACK = ("127.0.0.1", "localhost", "::1")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
EXAMPLES = {
    # [topic, style, sections, rhyme, syllables]
    "lyrics": [["rain on a city night", "", "", "", ""],
               ["leaving home at dawn", "folk", "verse chorus verse chorus", "AABB", ""],
               ["a summer that never ends", "pop", "V C V C B C", "ABAB", "8-10"]],
    # [topic, form]
    "poem": [["the sea at dawn", ""], ["an old oak tree", "haiku"], ["a cat who hates Mondays", "limerick"]],
    # [premise, length, style]
    "story": [["a lighthouse keeper finds a message in a bottle", "short", ""],
              ["a fox who could not sleep", "short", "fairy tale"],
              ["the last train out of a flooded city", "medium", ""]],
    # [key, tempo, time signature, bars, instrument]
    "melody": [["D minor", 100, "6/8", 8, "Violin"], ["C major", 120, "4/4", 8, "Acoustic Grand Piano"],
               ["G major", 90, "3/4", 16, "Flute"]],
}


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "fix your input": shown as one line, never as a traceback."""
    from museforge.errors import UserError

    return (UserError, ValueError, TypeError, FileNotFoundError)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@contextlib.contextmanager
def shown_as_ui_errors() -> Iterator[None]:
    """Turn any failure into a one-line gr.Error; the session keeps working."""
    try:
        yield
    except gr.Error:
        raise
    except user_errors() as e:
        raise gr.Error(_one_line(e), print_exception=False) from None
    except Exception as e:  # a bug, not the user's fault: log it in full, show one line
        log.exception("museforge app: unexpected error")
        raise gr.Error(f"Something went wrong ({type(e).__name__}: {_one_line(e)})", print_exception=False) from None


class Stopped(Exception):
    """Raised from the training callback when the user presses Stop."""


class ModelCache:
    """Loaded generators shared by every session: an LRU of immutable models, keyed by model.

    Text tasks share one set of weights (a lyrics model is also a poem model): the cache holds one
    Generator per (kind, model, style) and wraps its weights for the other text tasks.
    """

    def __init__(self, loader: Callable[[str, str, str], Any], size: int = 3):
        self.loader, self.size = loader, size
        self._items: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str, str], threading.Lock] = {}

    def get(self, task: str, model: str, style: str = ""):
        key = ("melody" if task == "melody" else "text", model, style)
        with self._lock:
            gen = self._items.get(key)
            if gen is not None:
                self._items.move_to_end(key)
            loading = self._loading.setdefault(key, threading.Lock())
        if gen is None:
            with loading:  # two sessions asking for the same model load it once
                with self._lock:
                    gen = self._items.get(key)
                if gen is None:
                    gen = self.loader(task, model, style)
                    with self._lock:
                        self._items[key] = gen
                        while len(self._items) > self.size:
                            self._items.popitem(last=False)
        if getattr(gen.task, "name", task) != task:
            from museforge.generation import Generator

            gen = Generator(task, gen.model, gen.tokenizer, gen.source)
        return gen


def _default_loader(task: str, model: str, style: str):
    from museforge.generation import load_generator

    return load_generator(task, model, style)


def new_session() -> dict[str, Any]:
    """One user's state (a gr.State value): never shared, dropped when the tab closes."""
    return {"id": uuid.uuid4().hex[:12], "runs": [], "last_melody": None, "stop": False, "count": 0}


class App:
    """The handlers behind the page. Build the page with `build_app`; tests call these directly."""

    def __init__(self, model: str | None = None, melody_model: str | None = None,
                 loader: Callable[[str, str, str], Any] | None = None, runs_dir: str | Path | None = None,
                 configs_dir: str | Path | None = None, cache_size: int = 3,
                 model_roots: Sequence[str | Path] = ()):
        self.text_model = str(model) if model else "default"
        self.melody_model = str(melody_model) if melody_model else "default"
        self.models = ModelCache(loader or _default_loader, cache_size)
        self.runs_dir = Path(runs_dir) if runs_dir else cache_dir() / "runs"
        self.configs_dir = Path(configs_dir) if configs_dir else Path(__file__).resolve().parents[2] / "configs"
        self.files_dir = Path(os.environ["GRADIO_TEMP_DIR"]) / "museforge"
        self.upload_dirs = [Path(os.environ["GRADIO_TEMP_DIR"])]
        """Where uploaded files may be read from (Gradio puts uploads here)."""
        launched = [Path(m).expanduser() for m in (self.text_model, self.melody_model) if Path(m).expanduser().is_dir()]
        self.model_roots = [self.runs_dir, cache_dir(), *launched, *map(Path, model_roots)]
        """Folders a model path typed into the page may point into (the runs, the cache, the models
        the app was started with, and any --model-root): the person at the browser may not be the
        one who started the server, so the server's owner decides at launch which folders load."""
        self.dropdowns: dict[str, gr.Dropdown] = {}  # each tab's model menu (the page, not user data)
        self.session: gr.State | None = None

    # ---- models ---------------------------------------------------------------------------
    def model_choices(self, task: str, session: dict | None = None) -> list[tuple[str, str]]:
        """The defaults, the shipped styles, and this session's trained runs for `task`."""
        from museforge.styles import available_styles

        default = self.melody_model if task == "melody" else self.text_model
        label = "default" if default == "default" else f"default ({Path(default).name})"
        choices = [(label, "default")]
        choices += [(f"style: {name}", f"style:{name}") for name in available_styles(task)]
        choices += [(f"trained: {r['label']}", r["path"]) for r in (session or {}).get("runs", []) if r["task"] == task]
        return choices

    def allowed_model(self, choice: str) -> str:
        """`choice` if the page may load it: a menu value, a Hub id, or a folder under model_roots."""
        path = Path(choice).expanduser()
        if choice in ("default",) or choice.startswith("style:") or (HUB_ID.fullmatch(choice) and ".." not in choice
                                                                      and not path.exists()):
            return choice
        real = path.resolve()  # follows symlinks and ..: a link out of a root does not count as inside
        if any(real.is_relative_to(root.expanduser().resolve()) for root in self.model_roots):
            return choice
        raise gr.Error(f"The model '{choice}' is outside the folders this app loads models from (its runs and "
                       "cache): pick one from the menu, type a Hub id, or start the app with --model-root FOLDER.",
                       print_exception=False)

    def uploaded(self, upload: str | Path, what: str) -> Path:
        """An uploaded file's path, checked to lie in Gradio's upload folder and to be of a sane size."""
        path = Path(upload)
        real = path.resolve()
        if not any(real.is_relative_to(d.resolve()) for d in self.upload_dirs):
            raise gr.Error(f"The {what} '{path.name}' is not an uploaded file: upload it with the file box.",
                           print_exception=False)
        if not real.is_file():
            raise gr.Error(f"The {what} '{path.name}' is not a file: upload one file.", print_exception=False)
        if real.stat().st_size > MAX_UPLOAD:
            raise gr.Error(f"The {what} '{path.name}' is {real.stat().st_size / 2**20:.0f} MB; uploads are limited to "
                           f"{MAX_UPLOAD // 2**20} MB: upload a smaller file or a .zip.", print_exception=False)
        return path

    def generator(self, task: str, choice: str | None, progress: gr.Progress | None = None):
        """The Generator for a model choice: "default", "style:NAME", a run dir, a path or Hub id."""
        choice = self.allowed_model((choice or "default").strip())
        model, style = choice, ""
        if choice.startswith("style:"):  # a shipped adapter on museforge's own default model
            model, style = "default", choice.split(":", 1)[1]
        elif model == "default":
            model = self.melody_model if task == "melody" else self.text_model
        if progress is not None:
            progress(0, desc=f"Loading {task} model…")
        return self.models.get(task, model, style)

    def preload(self, tasks: Sequence[str] = ("lyrics",)) -> threading.Thread:
        """Load the default models in the background so the first click is fast."""
        def work() -> None:
            for task in tasks:
                try:
                    self.generator(task, "default")
                except Exception as e:  # reported again, as a gr.Error, when the user clicks
                    log.warning("museforge app: could not preload the %s model: %s", task, _one_line(e))

        thread = threading.Thread(target=work, daemon=True, name="museforge-preload")
        thread.start()
        return thread

    def forget(self, session: dict | None) -> None:
        """Delete a session's files (melodies, uploads, zips) once Gradio drops its state.

        Trained runs stay in runs_dir: they are models the user may want to load again.
        """
        if session and session.get("id"):
            shutil.rmtree(self.files_dir / session["id"], ignore_errors=True)

    def session_dir(self, session: dict) -> Path:
        path = self.files_dir / session["id"]
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ---- text tabs ------------------------------------------------------------------------
    @staticmethod
    def sampling(temperature: float, top_p: float, top_k: float, repetition_penalty: float,
                 random_seed: bool, seed: float | None, num: float, max_new_tokens: float | None = None) -> dict[str, Any]:
        """Keyword arguments for generate()/stream() from the Advanced accordion."""
        if random_seed or seed is None:
            seed = random.randrange(2**31)
        kw: dict[str, Any] = {"temperature": float(temperature), "top_p": float(top_p), "top_k": int(top_k),
                              "repetition_penalty": float(repetition_penalty), "seed": int(seed),
                              "num_return_sequences": int(num)}
        if not 1 <= kw["num_return_sequences"] <= MAX_SAMPLES:
            raise gr.Error(f"Number of samples must be between 1 and {MAX_SAMPLES}.", print_exception=False)
        if max_new_tokens is not None:
            if not 1 <= int(max_new_tokens) <= MAX_UI_TOKENS:
                raise gr.Error(f"Max new tokens must be between 1 and {MAX_UI_TOKENS}.", print_exception=False)
            kw["max_new_tokens"] = int(max_new_tokens)
        return kw

    def write(self, task: str, prompt: str, model_choice: str | None, options: dict[str, Any],
              sampling: dict[str, Any], progress: gr.Progress | None = None) -> Iterator[tuple[str, str]]:
        """Stream (text so far, provenance JSON) for a text task. Several samples come at once."""
        with shown_as_ui_errors():
            prompt = (prompt or "").strip()
            image = options.pop("image", None)  # a Seen from look(), or an image file
            if not prompt and image is None:
                noun = "premise" if task == "story" else "topic"
                raise gr.Error(f"Write a {noun} first, e.g. “{EXAMPLES[task][0][0]}”.", print_exception=False)
            if len(prompt) > MAX_PROMPT_CHARS:
                raise gr.Error(f"The {task} prompt is {len(prompt)} characters; keep it under {MAX_PROMPT_CHARS}.",
                               print_exception=False)
            options = {k: v for k, v in options.items() if v not in (None, "")}  # unset = the model's choice
            gen = self.generator(task, model_choice, progress)
            kw = {**options, **sampling}
            if image is not None:
                kw["image"] = self.look(image)
            if kw["num_return_sequences"] > 1:  # sampled together in one batch: faster than one by one
                if progress is not None:
                    progress(0.5, desc=f"Writing {kw['num_return_sequences']} samples…")
                outs = gen.generate(prompt, **kw)
                outs = outs if isinstance(outs, list) else [outs]
                text = "\n\n".join(f"── sample {i + 1} (seed {o.provenance.get('seed')}) ──\n{o.text}"
                                   for i, o in enumerate(outs))
                self._warn_unmet(outs)
                yield text, _json([{"prompt": prompt, **o.provenance, "metadata": o.metadata} for o in outs])
                return
            settings, opts = gen.settings(**kw)  # the same validation and seed the stream uses
            record = {"prompt": prompt, **gen.provenance(settings, {k: v for k, v in opts.items() if k != "image"})}
            if image is not None:  # the finished output records the same (metadata["seen"])
                record["options"]["image"] = kw["image"].image
                record["seen"] = kw["image"].to_dict()
            text = ""
            yield text, _json({**record, "status": "writing…"})
            for chunk in gen.stream(prompt, **kw):
                text += chunk
                yield text, gr.skip()
            yield text.strip(), _json(record)

    def look(self, image: Any, vision_model: str = "default"):
        """What a picture shows (a museforge.vision.Seen; None without a picture)."""
        if image is None or image == "":
            return None
        from museforge.vision import identify

        with shown_as_ui_errors():
            if isinstance(image, str | Path):  # a Seen or PIL image passes as it is
                image = str(self.uploaded(image, "picture"))
            return identify(image, vision_model=vision_model)

    @staticmethod
    def seen_markdown(seen: Any) -> str:
        """The recognition shown above the text: description, top labels, mood."""
        if seen is None:
            return ""
        from museforge.vision import mood_phrase

        lines = [f"**Seen:** {seen.description}"]
        if seen.labels:
            lines.append("top labels: " + ", ".join(f"{n} {p:.0%}" for n, p in seen.labels[:3]))
        lines.append(f"mood: {mood_phrase(seen.mood)}")
        return "  \n".join(lines)

    @staticmethod
    def _warn_unmet(outputs: list) -> None:
        unmet = sum(len(o.metadata.get("failures", [])) for o in outputs)
        if unmet:
            gr.Warning(f"{unmet} line(s) could not meet every rhyme/syllable constraint (see provenance).")

    # ---- melody -----------------------------------------------------------------------------
    def melody(self, session: dict, model_choice: str | None, key: str, tempo: float, time_signature: str,
               bars: float, instrument: str, primer: str | None, density: str, sampling: dict[str, Any],
               progress: gr.Progress | None = None):
        """Generate a melody; returns (wav, png, [.mid files], summary, provenance JSON)."""
        with shown_as_ui_errors():
            options: dict[str, Any] = {"key": key, "tempo": int(tempo) if tempo else None,
                                       "time_signature": time_signature, "bars": int(bars) if bars else None,
                                       "instrument": instrument, "density": density}
            if options["bars"] is not None and not 1 <= options["bars"] <= 64:
                raise gr.Error("Bars must be between 1 and 64.", print_exception=False)
            if primer:
                primer = str(self.uploaded(primer, "primer"))
                if Path(primer).suffix.lower() not in MIDI_SUFFIXES:
                    raise gr.Error(f"The primer must be a MIDI file (.mid), not '{Path(primer).name}'.",
                                   print_exception=False)
                _readable_midi(primer)
                options["primer"] = str(primer)
            options = {k: v for k, v in options.items() if v not in (None, "")}
            gen = self.generator("melody", model_choice, progress)
            if progress is not None:
                progress(0.3, desc="Composing…")
            result = gen.generate(**options, **sampling)
            melodies = result if isinstance(result, list) else [result]
            if progress is not None:
                progress(0.8, desc="Rendering audio and piano roll…")
            folder = self.session_dir(session)
            session["count"] += 1
            stem = f"melody-{session['count']:03d}"
            mids = []
            for i, m in enumerate(melodies):
                mids.append(str(m.save(folder / f"{stem}{'' if len(melodies) == 1 else f'-{i + 1}'}.mid")))
            first = melodies[0]
            wav = str(first.save_audio(folder / f"{stem}.wav"))
            png = str(first.piano_roll(folder / f"{stem}.png"))
            session["last_melody"] = {"mid": mids[0], "model": model_choice, "options": options,
                                      "sampling": {k: v for k, v in sampling.items() if k != "seed"}}
            provenance = [m.provenance for m in melodies] if len(melodies) > 1 else first.provenance
            return wav, png, mids, str(first), _json(provenance)

    def melody_again(self, session: dict, continue_it: bool, progress: gr.Progress | None = None):
        """Regenerate the last melody with a new seed, or continue it (the last result as primer)."""
        last = session.get("last_melody")
        if not last:
            raise gr.Error("Generate a melody first.", print_exception=False)
        options = dict(last["options"])
        if continue_it:
            options["primer"] = last["mid"]
        opts = {k: options.get(k) for k in ("key", "tempo", "time_signature", "bars", "instrument", "density")}
        sampling = {**last["sampling"], "seed": random.randrange(2**31)}
        return self.melody(session, last["model"], primer=options.get("primer"), sampling=sampling,
                           progress=progress, **opts)

    # ---- fine-tune --------------------------------------------------------------------------
    def presets(self) -> list[tuple[str, str]]:
        found = []
        if (self.configs_dir / "tiny.yaml").is_file():
            found.append(("tiny: a small model from scratch, seconds on a CPU", "tiny"))
        found.append(("full: the task's recipe (LoRA on the default model; minutes to hours on a CPU)", "full"))
        return found

    def training_data(self, session: dict, upload: str | None, task: str) -> Path:
        """Copy (or unzip) the upload into this session's folder; checks that it suits the task."""
        if not upload:
            raise gr.Error("Upload a training file first: .txt, .jsonl, .csv, .mid or a .zip of them.",
                           print_exception=False)
        src = self.uploaded(upload, "training file")
        suffix = src.suffix.lower()
        wanted = MIDI_SUFFIXES if task == "melody" else TEXT_SUFFIXES
        if suffix not in TEXT_SUFFIXES | MIDI_SUFFIXES | {".zip"}:
            raise gr.Error(f"'{src.name}' is not a training file: upload .txt, .md, .jsonl, .json, .csv, .mid "
                           "or a .zip of them.", print_exception=False)
        if suffix not in wanted | {".zip"}:
            kind = "MIDI" if task == "melody" else "text"
            raise gr.Error(f"The {task} task trains on {kind} files ({', '.join(sorted(wanted))}), "
                           f"not '{src.name}'.", print_exception=False)
        target = self.session_dir(session) / f"data-{uuid.uuid4().hex[:6]}"
        target.mkdir()
        try:
            if suffix == ".zip":
                _unzip(src, target, wanted)
                if not any(f.suffix.lower() in wanted for f in target.rglob("*")):
                    raise gr.Error(f"'{src.name}' holds no {' or '.join(sorted(wanted))} files for the {task} task: "
                                   "zip the training files themselves.", print_exception=False)
                return target
            name = re.sub(r"[^\w.-]", "_", src.name)  # Gradio keeps the client's file name: trust no part of it
            shutil.copy(src, target / name)
            return target / name
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # nothing half-copied stays behind
            raise

    def train(self, session: dict, upload: str | None, task: str, preset: str, steps: float,
              base_choice: str | None, progress: gr.Progress | None = None) -> Iterator[dict[str, Any]]:
        """Train in a background thread; yield progress events as dicts for the page to draw.

        Yields {"status", "history", "samples"} while training and finally {"run": path, "zip": path}.
        """
        from museforge.config import load_config

        with shown_as_ui_errors():
            if task not in TASK_TABS:
                raise gr.Error(f"Pick a task: {', '.join(TASK_TABS)}.", print_exception=False)
            data = self.training_data(session, upload, task)
            path = self.configs_dir / ("tiny.yaml" if preset == "tiny" else f"{task}.yaml")
            if not path.is_file():
                raise gr.Error(f"No {preset} preset for {task} here ({path.name} is missing).", print_exception=False)
            out = self.runs_dir / f"{task}-{{time}}-{session['id'][:6]}"
            train_over: dict[str, Any] = {"out_dir": str(out)}
            if steps and int(steps) > 0:
                if int(steps) > 10_000:
                    raise gr.Error("Steps must be at most 10000 (0 = the preset's length).", print_exception=False)
                # a few validation points and samples along the way, so the curve and samples are live
                train_over.update(max_steps=int(steps), sample_every=max(5, int(steps) // 3),
                                  eval_every=max(1, int(steps) // 5))
            sections: dict[str, Any] = {"task": task, "data": {"path": str(data)}, "train": train_over}
            base = (base_choice or "default").strip()
            if base.startswith("style:"):
                raise gr.Error("Fine-tune from the default model or a run, not from a style adapter.",
                               print_exception=False)
            base = (self.melody_model if task == "melody" else self.text_model) if base == "default" else self.allowed_model(base)
            if base != "default":
                sections["model"] = {"name": base}
            cfg = load_config(path, **sections)

            events: queue.Queue = queue.Queue()
            session["stop"] = False

            def callback(event: dict[str, Any]) -> None:
                if session.get("stop"):
                    raise Stopped("stopped by the user")
                events.put(event)

            def work() -> None:
                from museforge.training import train

                try:
                    events.put({"event": "done", "run": str(train(cfg, callback=callback))})
                except BaseException as e:  # handed to the page's thread
                    events.put({"event": "error", "error": e})

            threading.Thread(target=work, daemon=True, name=f"museforge-train-{session['id']}").start()
            if progress is not None:
                progress(0, desc="Preparing data and model…")
            history: list[dict[str, Any]] = []
            samples: list[str] = []
            status = "Preparing data and model…"
            last_yield = 0.0
            try:
                while True:
                    event = events.get()
                    kind = event["event"]
                    if kind == "error":
                        error = event["error"]
                        if isinstance(error, Stopped):
                            raise gr.Error("Training stopped. Its last checkpoint is kept on the server.",
                                           print_exception=False)
                        raise error
                    if kind == "done":
                        run = Path(event["run"])
                        label = run.name
                        session["runs"].append({"task": task, "path": str(run), "label": label})
                        yield {"status": f"Done: **{label}** is ready. Pick it in the {task} tab or try it below.",
                               "history": history, "samples": samples, "run": str(run),
                               "zip": str(self.zip_run(session, run))}
                        return
                    if kind == "samples":
                        samples = [f"── step {event['step']} ──\n{s}" for s in event["samples"]] + samples
                    else:
                        step, total = event["step"], event["max_steps"]
                        for name, split in (("loss", "train"), ("val_loss", "validation")):
                            if event.get(name) is not None:
                                history.append({"step": step, "loss": float(event[name]), "split": split})
                        loss = f", loss {event['loss']:.3f}" if event.get("loss") is not None else ""
                        status = f"Step {step}/{total}{loss}"
                        if progress is not None:
                            progress((step, total), desc=status, unit="steps")
                    if time.monotonic() - last_yield > 0.5 or kind == "samples":  # spare the browser
                        last_yield = time.monotonic()
                        yield {"status": status, "history": history, "samples": samples}
            finally:
                session["stop"] = True  # if the page went away, the training thread stops too

    def zip_run(self, session: dict, run: Path) -> Path:
        """The run dir as a zip: the loadable model, its config, metrics and samples.

        Resumable checkpoints (optimizer state) stay on the server, in run/checkpoints.
        """
        target = self.session_dir(session) / f"{run.name}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(run.rglob("*")):
                rel = f.relative_to(run)
                if f.is_file() and rel.parts[0] not in ("checkpoints", "best"):
                    z.write(f, Path(run.name) / rel)
        return target


def _readable_midi(path: str | Path) -> None:
    from museforge.errors import UserError
    from museforge.music.tokenizer import load_score

    try:
        load_score(path)
    except UserError as e:  # missing, empty, huge, not MIDI, corrupt: the API's own line
        raise gr.Error(_one_line(e), print_exception=False) from None
    except Exception as e:  # noqa: BLE001 - anything else symusic may raise
        raise gr.Error(f"'{Path(path).name}' is not a readable MIDI file ({_one_line(e)}).",
                       print_exception=False) from None


def _unzip(src: Path, target: Path, wanted: set[str]) -> None:
    """Extract the training files of a zip, flat, after checking it is not a zip bomb: the declared
    sizes (total, and each member's expansion ratio) are checked before anything is written, and
    the bytes really written are counted too, in case the declared sizes lie."""
    try:
        with zipfile.ZipFile(src) as z:
            members = [m for m in z.infolist() if not m.is_dir() and Path(m.filename).suffix.lower() in wanted
                       and not Path(m.filename).name.startswith(".") and "__MACOSX" not in m.filename]
            if len(members) > MAX_ZIP_FILES:
                raise gr.Error(f"'{src.name}' holds {len(members)} training files; at most {MAX_ZIP_FILES} per zip.",
                               print_exception=False)
            if sum(m.file_size for m in members) > MAX_UNZIPPED:
                raise gr.Error(f"'{src.name}' expands to more than {MAX_UNZIPPED // 2**20} MB: upload less data.",
                               print_exception=False)
            bomb = next((m for m in members if m.file_size > 2**20 and m.file_size > MAX_ZIP_RATIO * max(m.compress_size, 1)), None)
            if bomb is not None:
                raise gr.Error(f"'{src.name}' looks like a zip bomb: {Path(bomb.filename).name} expands "
                               f"{bomb.file_size // max(bomb.compress_size, 1)}x; zip the files normally.",
                               print_exception=False)
            written = 0
            for i, m in enumerate(members):  # flat, numbered names: no path from the zip is trusted
                name = re.sub(r"[^\w.-]", "_", Path(m.filename).name)
                with z.open(m) as fin, (target / f"{i:05d}-{name}").open("wb") as fout:
                    while chunk := fin.read(1 << 20):
                        written += len(chunk)
                        if written > MAX_UNZIPPED:
                            raise gr.Error(f"'{src.name}' expands to more than {MAX_UNZIPPED // 2**20} MB.",
                                           print_exception=False)
                        fout.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
        reason = " ".join(str(e).split())[:100]
        raise gr.Error(f"'{src.name}' is not a valid zip file ({reason}): zip the files again.",
                       print_exception=False) from None


def _signature(names: Sequence[str], optional: Sequence[str] = ()) -> inspect.Signature:
    """Parameter names for the API; `optional` ones come last, default None (API clients may omit them)."""
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in optional]
    params.append(inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=gr.Progress()))
    return inspect.Signature(params)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


# ---- the page -------------------------------------------------------------------------------
def _model_dropdown(app: App, task: str) -> gr.Dropdown:
    return gr.Dropdown(app.model_choices(task), value="default", label="Model", allow_custom_value=True,
                       info="the default, a shipped style, a model you trained here, or type a path / Hub id")


def _advanced(task: str, max_tokens: int | None) -> list[gr.components.Component]:
    """The Advanced accordion: sampling controls, in App.sampling's argument order."""
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            temperature = gr.Slider(0, 2, value=0.8 if task != "melody" else 1.0, step=0.05, label="Temperature",
                                    info="0 = greedy")
            top_p = gr.Slider(0.05, 1, value=0.95, step=0.01, label="Top-p")
            top_k = gr.Slider(0, 200, value=50, step=1, label="Top-k", info="0 = off")
            repetition = gr.Slider(1, 2, value=1.15 if task != "melody" else 1.0, step=0.01,
                                   label="Repetition penalty")
        with gr.Row():
            random_seed = gr.Checkbox(True, label="Random seed")
            seed = gr.Number(1, precision=0, minimum=0, label="Seed", info="used when Random seed is off")
            num = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Number of samples")
            components = [temperature, top_p, top_k, repetition, random_seed, seed, num]
            if max_tokens:
                components.append(gr.Slider(16, MAX_UI_TOKENS, value=max_tokens, step=8, label="Max new tokens"))
    return components


def _provenance(task: str) -> gr.Code:
    return gr.Code("", language="json", label="Provenance (model, settings, seed)", buttons=["copy"],
                   interactive=False, max_lines=14, elem_id=f"{task}-provenance")


def _text_tab(app: App, task: str, fields: Callable[[], list[gr.components.Component]],
              names: Sequence[str], max_tokens: int | None, prompt_label: str, placeholder: str) -> None:
    """A text task: prompt, task fields, model, Advanced; output streams into a textbox."""
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label=prompt_label, placeholder=placeholder, lines=2, max_length=MAX_PROMPT_CHARS,
                                elem_id=f"{task}-prompt")
            # image_mode=None: the file reaches museforge.vision as uploaded (it converts CMYK, 16-bit, alpha)
            image = gr.Image(label="Picture (optional): write from a photo", type="filepath", image_mode=None,
                             sources=["upload", "clipboard"], height=180, elem_id=f"{task}-image")
            extra = fields()
            model = _model_dropdown(app, task)
            advanced = _advanced(task, max_tokens)
            with gr.Row():
                go = gr.Button("Write", variant="primary", elem_id=f"{task}-go")
                stop = gr.Button("Stop", variant="stop", elem_id=f"{task}-stop")
        with gr.Column(scale=3):
            seen = gr.Markdown("", elem_id=f"{task}-seen")
            output = gr.Textbox(label=task.capitalize(), lines=16, max_lines=40, buttons=["copy"],
                                autoscroll=True, elem_id=f"{task}-output")
            provenance = _provenance(task)
    gr.Examples(EXAMPLES[task], inputs=[prompt, *extra], label="Examples (click one, then Write)")

    sampling_names = ["temperature", "top_p", "top_k", "repetition_penalty", "random_seed", "seed",
                      "num_samples"] + (["max_new_tokens"] if max_tokens else [])

    def handler(prompt, *values, progress=gr.Progress()):
        options = dict(zip(names, values[: len(names)], strict=True))
        choice, sampling, image = values[len(names)], values[len(names) + 1: -1], values[-1]
        with shown_as_ui_errors():
            kw = App.sampling(*sampling)
        picture = app.look(image)
        yield gr.skip(), gr.skip(), App.seen_markdown(picture)  # what was recognized, before the text
        if picture is not None:
            options["image"] = picture
        for text, record in app.write(task, prompt, choice, options, kw, progress):
            yield text, record, gr.skip()

    # name the API's parameters (gradio_client users see prompt, style, ... not param_1, param_2)
    handler.__signature__ = _signature(["prompt", *names, "model", *sampling_names], optional=["image"])
    event = gr.on([go.click, prompt.submit], handler, [prompt, *extra, model, *advanced, image],
                  [output, provenance, seen], api_name=task, concurrency_id="generate")
    stop.click(None, cancels=[event], queue=False, api_visibility="private")
    app.dropdowns[task] = model


def lyrics_tab(app: App) -> None:
    def fields():
        with gr.Row():
            style = gr.Textbox(label="Style", placeholder="pop, folk, rap, hymn…")
            sections = gr.Textbox(label="Sections", placeholder="verse chorus verse chorus bridge chorus  (or V C V C B C)")
        with gr.Row():
            rhyme = gr.Dropdown(RHYMES, value="", label="Rhyme scheme")
            syllables = gr.Textbox(label="Syllables per line", placeholder="8-10, or 8")
        return [style, sections, rhyme, syllables]

    _text_tab(app, "lyrics", fields, ("style", "sections", "rhyme", "syllables"), 200, "Topic",
              "rain on a city night")


def poem_tab(app: App) -> None:
    def fields():
        return [gr.Dropdown(FORMS, value="", label="Form")]

    _text_tab(app, "poem", fields, ("form",), 160, "Topic", "the sea at dawn")


def story_tab(app: App) -> None:
    def fields():
        with gr.Row():
            length = gr.Radio(LENGTHS, value="short", label="Length")
            style = gr.Textbox(label="Style", placeholder="fairy tale, noir, sci-fi…")
        return [length, style]

    _text_tab(app, "story", fields, ("length", "style"), None, "Premise",
              "a lighthouse keeper finds a message in a bottle")


def _gm_instruments() -> list[str]:
    from pretty_midi.constants import INSTRUMENT_MAP

    return list(INSTRUMENT_MAP)


def melody_tab(app: App) -> None:
    from museforge.music.tokenizer import DENSITY_BUCKETS, KEYS, TEMPO_RANGE

    with gr.Row():
        with gr.Column(scale=2):
            with gr.Row():
                key = gr.Dropdown(KEYS, value="C major", label="Key", allow_custom_value=True)
                tempo = gr.Slider(*TEMPO_RANGE, value=110, step=1, label="Tempo (bpm)")
            with gr.Row():
                time_signature = gr.Dropdown(TIME_SIGNATURES, value="4/4", label="Time signature")
                bars = gr.Slider(1, 64, value=8, step=1, label="Bars")
            with gr.Row():
                instrument = gr.Dropdown(_gm_instruments(), value="Acoustic Grand Piano", label="Instrument",
                                         allow_custom_value=True)
                density = gr.Dropdown([("model's choice", ""), *DENSITY_BUCKETS], value="", label="Note density")
            primer = gr.File(label="Primer MIDI to continue (optional)", file_types=[".mid", ".midi"],
                             type="filepath", elem_id="melody-primer")
            model = _model_dropdown(app, "melody")
            advanced = _advanced("melody", None)
            with gr.Row():
                go = gr.Button("Compose", variant="primary", elem_id="melody-go")
                stop = gr.Button("Stop", variant="stop")
            with gr.Row():
                again = gr.Button("Regenerate", elem_id="melody-regenerate")
                more = gr.Button("Continue this", elem_id="melody-continue")
        with gr.Column(scale=3):
            audio = gr.Audio(label="Listen", type="filepath", interactive=False, elem_id="melody-audio")
            roll = gr.Image(label="Piano roll", type="filepath", interactive=False, elem_id="melody-roll")
            mid = gr.File(label="Download .mid", file_count="multiple", interactive=False, elem_id="melody-mid")
            summary = gr.Textbox(label="Summary", lines=2, interactive=False)
            provenance = _provenance("melody")
    gr.Examples(EXAMPLES["melody"], inputs=[key, tempo, time_signature, bars, instrument],
                label="Examples (click one, then Compose)")
    session = app.session
    outputs = [audio, roll, mid, summary, provenance]

    def compose(session, model, key, tempo, time_signature, bars, instrument, primer, density, temperature, top_p,
                top_k, repetition_penalty, random_seed, seed, num_samples, progress=gr.Progress()):
        with shown_as_ui_errors():
            kw = App.sampling(temperature, top_p, top_k, repetition_penalty, random_seed, seed, num_samples)
        return app.melody(session, model, key, tempo, time_signature, bars, instrument, primer, density, kw, progress)

    def regenerate(session, progress=gr.Progress()):
        return app.melody_again(session, continue_it=False, progress=progress)

    def continue_(session, progress=gr.Progress()):
        return app.melody_again(session, continue_it=True, progress=progress)

    inputs = [session, model, key, tempo, time_signature, bars, instrument, primer, density, *advanced]
    e1 = go.click(compose, inputs, outputs, api_name="melody", concurrency_id="generate")
    e2 = again.click(regenerate, [session], outputs, api_name="melody_regenerate", concurrency_id="generate")
    e3 = more.click(continue_, [session], outputs, api_name="melody_continue", concurrency_id="generate")
    stop.click(None, cancels=[e1, e2, e3], queue=False, api_visibility="private")
    app.dropdowns["melody"] = model


def finetune_tab(app: App) -> None:
    import pandas as pd

    def frame(history: list[dict[str, Any]]) -> pd.DataFrame:
        f = pd.DataFrame(history, columns=["step", "loss", "split"])
        return f.astype({"step": "int64", "loss": "float64", "split": "str"})

    with gr.Row():
        with gr.Column(scale=2):
            upload = gr.File(label="Training data: .txt/.md (blank-line separated), .jsonl/.csv, .mid, or a .zip",
                             file_types=[".txt", ".md", ".jsonl", ".json", ".csv", ".mid", ".midi", ".zip"],
                             type="filepath", elem_id="train-file")
            with gr.Row():
                task = gr.Dropdown(list(TASK_TABS), value="lyrics", label="Task")
                preset = gr.Dropdown(app.presets(), value=app.presets()[0][1], label="Preset")
            with gr.Row():
                steps = gr.Number(30, precision=0, minimum=0, maximum=10_000, label="Steps",
                                  info="optimizer steps; 0 = the preset's epochs")
                base = gr.Dropdown(app.model_choices("lyrics"), value="default", label="Start from",
                                   allow_custom_value=True, info="model whose tokenizer/weights to start from")
            with gr.Row():
                go = gr.Button("Train", variant="primary", elem_id="train-go")
                stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
            status = gr.Markdown("Upload a file, pick the task and a preset, then Train.", elem_id="train-status")
            download = gr.DownloadButton("Download the model (.zip)", visible=False, elem_id="train-download")
        with gr.Column(scale=3):
            # starts empty (None): Gradio 6 draws no lines into a plot that started as an empty frame
            plot = gr.LinePlot(None, x="step", y="loss", color="split", title="Loss", height=260,
                               elem_id="train-plot")
            samples = gr.Textbox(label="Samples written during training", lines=8, max_lines=20, interactive=False)
    with gr.Group():
        gr.Markdown("### Try your model")
        with gr.Row():
            try_prompt = gr.Textbox(label="Topic / premise", placeholder="rain on a city night", scale=3,
                                    elem_id="try-prompt")
            try_go = gr.Button("Write with my model", variant="primary", scale=1, elem_id="try-go")
        try_out = gr.Textbox(label="Output", lines=8, buttons=["copy"], elem_id="try-output")
    session, last_run = app.session, gr.State(None)
    dropdowns = [app.dropdowns[t] for t in TASK_TABS if t in app.dropdowns]

    def run(session, data_file, task, preset, steps, start_from, progress=gr.Progress()):
        for event in app.train(session, data_file, task, preset, steps, start_from, progress):
            update = [event["status"], frame(event["history"]), "\n\n".join(event["samples"])]
            if "run" not in event:
                yield [*update, gr.skip(), gr.skip(), *[gr.skip()] * len(dropdowns)]
                continue
            # the new run joins every model menu of its task (this session only)
            menus = [gr.update(choices=app.model_choices(t, session), **({"value": event["run"]} if t == task else {}))
                     for t in TASK_TABS if t in app.dropdowns]
            yield [*update, gr.update(value=event["zip"], visible=True), {"task": task, "path": event["run"]}, *menus]

    def stop_training(session):
        session["stop"] = True

    def try_model(last, prompt, progress=gr.Progress()):
        if not last:
            raise gr.Error("Train a model first.", print_exception=False)
        if last["task"] == "melody":
            raise gr.Error("Your melody model is selected in the Melody tab: compose there.", print_exception=False)
        sampling = App.sampling(0.8, 0.95, 50, 1.15, True, None, 1, 120)
        for text, _ in app.write(last["task"], prompt, last["path"], {}, sampling, progress):
            yield text

    event = go.click(run, [session, upload, task, preset, steps, base],
                     [status, plot, samples, download, last_run, *dropdowns], api_name="train",
                     concurrency_id="train", concurrency_limit=1, show_progress_on=[status])
    stop.click(stop_training, [session], None, cancels=[event], queue=False, api_visibility="private")
    task.change(lambda t, s: gr.update(choices=app.model_choices(t, s), value="default"), [task, session], [base],
                queue=False, api_visibility="private")
    try_go.click(try_model, [last_run, try_prompt], [try_out], api_name="try", concurrency_id="generate")


TABS: dict[str, tuple[str, Callable[[App], None]]] = {
    "lyrics": ("Lyrics", lyrics_tab), "poem": ("Poem", poem_tab), "story": ("Story", story_tab),
    "melody": ("Melody", melody_tab), "finetune": ("Fine-tune", finetune_tab),
}


def build_app(model: str | Path | None = None, melody_model: str | Path | None = None,
              tabs: Sequence[str] | None = None, loader: Callable[[str, str, str], Any] | None = None,
              runs_dir: str | Path | None = None, configs_dir: str | Path | None = None,
              concurrency: int = 2, title: str = "museforge", model_roots: Sequence[str | Path] = ()) -> gr.Blocks:
    """The app as gr.Blocks (queue configured). `model`/`melody_model` replace the defaults.

    `tabs` picks some of lyrics, poem, story, melody, finetune (all by default); `loader(task, model,
    style)` builds a Generator (default: museforge.generation.load_generator). Nothing loads until used.
    `model_roots` adds folders whose models may be typed into the page (see App.model_roots).
    """
    tabs = list(tabs or TABS)
    unknown = [t for t in tabs if t not in TABS]
    if unknown:
        raise ValueError(f"unknown tab '{unknown[0]}': choose from {', '.join(TABS)}")
    app = App(model, melody_model, loader, runs_dir, configs_dir, model_roots=model_roots)
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 24 * 3600)) as demo:
        gr.Markdown(f"# {title}\nLyrics, poems, stories and melodies from small transformers, on your machine.")
        # Gradio drops a session's state an hour after its tab closes; its files go with it
        app.session = gr.State(new_session, delete_callback=app.forget)
        with gr.Tabs():
            for name in tabs:
                label, build = TABS[name]
                with gr.Tab(label, id=name):
                    build(app)
    demo.museforge = app  # tests and `serve` reach the handlers (and preload) through this
    return demo.queue(default_concurrency_limit=concurrency, max_size=64)


def serve(model: str | None = None, melody_model: str | None = None, tabs: Sequence[str] | None = None,
          host: str = "127.0.0.1", port: int = 7860, share: bool = False, preload: bool = True,
          block: bool = True, model_roots: Sequence[str | Path] = ()) -> gr.Blocks:
    """Build and launch the app (loopback only and no share link unless asked); used by the CLI and demos/.

    Binding another interface or opening a share link prints a one-line warning: the app has no login.
    """
    for line in exposure_warnings(host, share):
        print(line, file=sys.stderr, flush=True)
    demo = build_app(model, melody_model, tabs, model_roots=model_roots)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True, show_error=True,
                max_file_size=MAX_UPLOAD)
    if preload:
        text = [t for t in (tabs or TABS) if t in TEXT_TASKS][:1]
        demo.museforge.preload(text + (["melody"] if "melody" in (tabs or TABS) else []))
    if block:
        demo.block_thread()
    return demo


def exposure_warnings(host: str, share: bool) -> list[str]:
    """One line per way the app is reachable beyond this machine's own loopback interface."""
    lines = []
    if host not in LOOPBACK:
        lines.append(f"museforge: warning: binding {host} makes the app reachable from other machines, and it has "
                     "no login: anyone who can reach it can generate, train and upload files (use 127.0.0.1 to keep it local)")
    if share:
        lines.append("museforge: warning: --share opens a public gradio.live link to this app, with no login: "
                     "anyone with the link can use it")
    return lines
