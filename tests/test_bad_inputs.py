"""The catalogue of bad inputs: what every entry point answers to input it cannot use.

Each case is one bad input, tried through every entry point that takes it: the Python API
(raises museforge.UserError), the CLI (one line on stderr, exit code 2, no traceback) and the
Gradio handlers (one gr.Error). Every answer is one line that names the input and the fix, and no
output file or run directory is left behind. docs/bad-inputs.md is this table, rendered:

    python tests/test_bad_inputs.py          # rewrite docs/bad-inputs.md from CASES
"""

from __future__ import annotations

import inspect
import json
import math
import shutil
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # run as a script: tinymodels, ui_support
from tinymodels import ROOT  # noqa: E402
from ui_support import write_midi  # noqa: E402  (sets GRADIO_TEMP_DIR before gradio loads)

DOC = ROOT / "docs" / "bad-inputs.md"


@dataclass(frozen=True)
class Case:
    id: str
    input: str
    """The bad input, in words (the docs' first column)."""
    message: str
    """A fragment of the one-line answer: it names the input and says what to do."""
    api: Callable[[Any], Any] | None = None
    """env -> a call through the Python API."""
    cli: tuple[str, ...] | None = None
    """argv; {tmp}, {model}, {melody}, {lyrics_run}, {melody_run} are filled in."""
    ui: Callable[[Any], Any] | None = None
    """env -> a call of a Gradio handler (generators are consumed)."""
    ui_message: str | None = None
    """The handler's fragment when the page words it differently (its own limits, its own widgets)."""
    outputs: tuple[str, ...] = ()
    """Paths (placeholders as in cli) that must not exist afterwards."""


# ---- the Python API calls --------------------------------------------------------------------
def gen(task: str, prompt: str = "rain on a city night", model: str = "{model}", **kw):
    def call(env):
        import museforge

        return museforge.generate(task, prompt, model=env.fill(model), **kw)

    return call


def melody(model: str = "{melody}", **kw):
    def call(env):
        import museforge

        kw2 = {k: env.fill(v) if isinstance(v, str) else v for k, v in kw.items()}
        return museforge.generate_melody(model=env.fill(model), **kw2)

    return call


def train(config: str = "{tmp}/ok.yaml", *overrides: str):
    def call(env):
        import museforge

        return museforge.train(
            env.fill(config), [env.fill(o) for o in ("train.out_dir={tmp}/run", *overrides)]
        )

    return call


def text_report(path: str):
    def call(env):
        from museforge.evaluate import text_report

        return text_report(env.fill(path))

    return call


def midi_files(path: str):
    def call(env):
        from museforge.music.corpus import load_midi_files

        return load_midi_files(env.fill(path))

    return call


def load(task: str, model: str, **kw):
    def call(env):
        import museforge

        return museforge.load_generator(task, env.fill(model), **kw)

    return call


# ---- the Gradio handlers ---------------------------------------------------------------------
def sampling(**kw):
    from museforge.ui import App

    args = dict(
        temperature=0.8,
        top_p=0.95,
        top_k=50,
        repetition_penalty=1.15,
        random_seed=False,
        seed=1,
        num=1,
        max_new_tokens=8,
    )
    args.update(kw)
    return App.sampling(**args)


def write(
    task: str = "lyrics",
    prompt: str = "rain",
    model: str = "default",
    options: dict | None = None,
    **kw,
):
    return lambda env: env.app.write(task, prompt, env.fill(model), options or {}, sampling(**kw))


def compose(model: str = "default", primer: str | None = None, **kw):
    def call(env):
        from museforge.ui import new_session

        args = dict(
            key="D minor", tempo=100, time_signature="4/4", bars=2, instrument="Violin", density=""
        )
        args.update(kw)
        return env.app.melody(
            new_session(),
            env.fill(model),
            primer=env.fill(primer) if primer else None,
            sampling=sampling(max_new_tokens=None),
            **args,
        )

    return call


def upload(path: str | None, task: str = "lyrics", steps: int = 2, base: str = "default"):
    def call(env):
        from museforge.ui import new_session

        return env.app.train(
            new_session(), env.fill(path) if path else None, task, "tiny", steps, env.fill(base)
        )

    return call


LONG_PROMPT = "rain " * 700  # > 512 tokens: the tiny models' whole context
RUN = "{tmp}/run"
MID = "{tmp}/out.mid"

CASES = [
    # -- prompts ----------------------------------------------------------------------------
    Case(
        "empty-prompt",
        'prompt ""',
        "give a prompt",
        api=gen("lyrics", ""),
        cli=("generate", "lyrics", ""),
        ui=write(prompt=""),
        ui_message="Write a topic first",
    ),
    Case(
        "blank-prompt",
        "prompt of spaces and newlines",
        "give a prompt",
        api=gen("poem", "  \n "),
        cli=("generate", "poem", "  \n "),
        ui=write("poem", "  \n "),
        ui_message="Write a topic first",
    ),
    Case("prompt-not-text", "prompt=42 (not a string)", "give a prompt", api=gen("story", 42)),
    Case(
        "prompt-longer-than-context",
        "a 700-word prompt for a 512-token model",
        "shorten the prompt",
        api=gen("poem", LONG_PROMPT),
        cli=("generate", "poem", LONG_PROMPT, "--model", "{model}"),
        ui=write("poem", LONG_PROMPT * 2),
        ui_message="keep it under 1000",
    ),
    # -- sampling ---------------------------------------------------------------------------
    Case(
        "max-new-tokens-negative",
        "max_new_tokens=-1",
        "max_new_tokens must be between 1 and 4096",
        api=gen("lyrics", max_new_tokens=-1),
        cli=("generate", "lyrics", "x", "--max-new-tokens", "-1"),
        ui=write(max_new_tokens=-1),
        ui_message="Max new tokens must be between 1 and 1024",
    ),
    Case(
        "max-new-tokens-absurd",
        "max_new_tokens=10**9",
        "max_new_tokens must be between 1 and 4096",
        api=gen("story", max_new_tokens=10**9),
        cli=("generate", "story", "x", "--max-new-tokens", "1000000000"),
        ui=write(max_new_tokens=10**9),
        ui_message="Max new tokens must be between 1 and 1024",
    ),
    Case(
        "temperature-negative",
        "temperature=-1",
        "temperature must be >= 0",
        api=gen("lyrics", temperature=-1),
        cli=("generate", "lyrics", "x", "--temperature", "-1"),
        ui=write(temperature=-1),
    ),
    Case(
        "temperature-nan",
        "temperature=nan",
        "temperature: expected a finite number",
        api=gen("poem", temperature=math.nan),
        cli=("generate", "poem", "x", "--temperature", "nan"),
        ui=write(temperature=math.nan),
    ),
    Case(
        "temperature-absurd",
        "temperature=1e6",
        "at most 10",
        api=gen("poem", temperature=1e6),
        cli=("generate", "poem", "x", "--temperature", "1e6"),
    ),
    Case(
        "temperature-not-a-number",
        'temperature="hot"',
        "temperature: expected float",
        api=gen("poem", temperature="hot"),
    ),
    Case(
        "top-p-above-1",
        "top_p=2",
        "top_p must be in (0, 1]",
        api=gen("lyrics", top_p=2),
        cli=("generate", "lyrics", "x", "--top-p", "2"),
        ui=write(top_p=2),
    ),
    Case(
        "top-k-negative",
        "top_k=-5",
        "top_k and no_repeat_ngram_size must be >= 0",
        api=gen("lyrics", top_k=-5),
        cli=("generate", "lyrics", "x", "--top-k", "-5"),
        ui=write(top_k=-5),
    ),
    Case(
        "repetition-penalty-zero",
        "repetition_penalty=0",
        "repetition_penalty must be > 0",
        api=gen("lyrics", repetition_penalty=0),
        cli=("generate", "lyrics", "x", "--repetition-penalty", "0"),
        ui=write(repetition_penalty=0),
    ),
    Case(
        "samples-zero",
        "num_return_sequences=0",
        "num_return_sequences must be between 1 and 64",
        api=gen("poem", num_return_sequences=0),
        cli=("generate", "poem", "x", "--num", "0"),
        ui=write(num=0),
        ui_message="Number of samples must be between 1 and 8",
    ),
    Case(
        "seed-negative",
        "seed=-1",
        "seed must be between 0 and 2**62",
        api=gen("poem", seed=-1),
        cli=("generate", "poem", "x", "--seed", "-1"),
    ),
    Case(
        "unknown-argument",
        "colour='red' (no such option)",
        "unknown argument 'colour' for lyrics",
        api=gen("lyrics", colour="red"),
    ),
    Case(
        "melody-option-on-text",
        "--key for lyrics",
        "unknown argument 'key' for lyrics",
        api=gen("lyrics", key="D minor"),
        cli=("generate", "lyrics", "x", "--key", "D minor"),
    ),
    # -- tasks, styles, forms, keys, instruments --------------------------------------------
    Case(
        "unknown-task",
        "task songs",
        "unknown task 'songs': choose one of lyrics, poem, story, melody",
        api=gen("songs"),
        cli=("generate", "songs", "x"),
        ui=upload("{tmp}/songs.txt", task="songs"),
        ui_message="Pick a task: lyrics, poem, story, melody",
    ),
    Case(
        "unknown-style",
        "style opera (no shipped adapter)",
        "no shipped",
        api=gen("lyrics", model="default", style="opera"),
        cli=("generate", "melody", "--style", "opera"),
        ui=write(model="style:opera"),
    ),
    Case(
        "style-with-model",
        "a shipped style and --model together",
        "drop --model, or drop --style",
        api=gen("lyrics", style="hymn"),
        cli=("generate", "lyrics", "x", "--style", "hymn", "--model", "{model}"),
    ),
    Case(
        "unknown-form",
        "form=epic",
        "unknown poem form 'epic'",
        api=gen("poem", form="epic"),
        cli=("generate", "poem", "x", "--form", "epic"),
        ui=write("poem", options={"form": "epic"}),
    ),
    Case(
        "unknown-length",
        "story length=epic",
        "unknown story length 'epic': choose short, medium, long",
        api=gen("story", length="epic"),
        cli=("generate", "story", "x", "--length", "epic"),
        ui=write("story", options={"length": "epic"}),
    ),
    Case(
        "malformed-rhyme",
        "rhyme AB1B",
        "rhyme scheme 'AB1B' has '1'; use letters A-Z",
        api=gen("lyrics", rhyme="AB1B"),
        cli=("generate", "lyrics", "x", "--rhyme", "AB1B"),
        ui=write(options={"rhyme": "AB1B"}),
    ),
    Case(
        "rhyme-not-text",
        "rhyme=5",
        "rhyme scheme must be letters like 'AABB'",
        api=gen("poem", rhyme=5),
    ),
    Case(
        "unknown-section",
        'sections "verse solo"',
        "unknown section 'solo'",
        api=gen("lyrics", sections="verse solo"),
        cli=("generate", "lyrics", "x", "--sections", "verse solo"),
        ui=write(options={"sections": "verse solo"}),
    ),
    Case(
        "malformed-syllables",
        "syllables lots",
        "syllable target",
        api=gen("lyrics", syllables="lots"),
        cli=("generate", "lyrics", "x", "--syllables", "lots"),
        ui=write(options={"syllables": "lots"}),
    ),
    Case(
        "unknown-rhyme-level",
        "rhyme_level=loose",
        "unknown rhyme_level 'loose'",
        api=gen("lyrics", rhyme_level="loose"),
    ),
    Case(
        "unknown-key",
        'key "H major"',
        "unknown key 'H major'",
        api=melody(key="H major"),
        cli=("generate", "melody", "--key", "H major", "--model", "{melody}", "--out", MID),
        ui=compose(key="H major"),
        outputs=(MID,),
    ),
    Case(
        "unknown-instrument",
        "instrument kazoo",
        "unknown instrument 'kazoo'",
        api=melody(instrument="kazoo"),
        cli=("generate", "melody", "--instrument", "kazoo", "--model", "{melody}", "--out", MID),
        ui=compose(instrument="kazoo"),
        outputs=(MID,),
    ),
    Case(
        "instrument-program-out-of-range",
        "instrument 300",
        "instrument program must be 0..127",
        api=melody(instrument=300),
        cli=("generate", "melody", "--instrument", "300", "--out", MID),
        outputs=(MID,),
    ),
    Case(
        "unknown-time-signature",
        "time signature 4/3",
        "unsupported time signature '4/3'",
        api=melody(time_signature="4/3"),
        cli=("generate", "melody", "--time-signature", "4/3", "--out", MID),
        ui=compose(time_signature="4/3"),
        outputs=(MID,),
    ),
    Case(
        "bars-absurd",
        "bars=500",
        "bars must be an integer 1..128",
        api=melody(bars=500),
        cli=("generate", "melody", "--bars", "500", "--out", MID),
        ui=compose(bars=500),
        ui_message="Bars must be between 1 and 64",
        outputs=(MID,),
    ),
    Case(
        "tempo-absurd",
        "tempo=10000",
        "tempo",
        api=melody(tempo=10000),
        cli=("generate", "melody", "--tempo", "10000", "--out", MID),
        ui=compose(tempo=10000),
        outputs=(MID,),
    ),
    Case(
        "tempo-infinite", "tempo=inf", "tempo must be a number of bpm", api=melody(tempo=math.inf)
    ),
    # -- MIDI files passed as MIDI ----------------------------------------------------------
    Case(
        "primer-missing",
        "--primer that does not exist",
        "MIDI file not found",
        api=melody(primer="{tmp}/none.mid"),
        cli=("generate", "melody", "--primer", "{tmp}/none.mid", "--out", MID),
        ui=compose(primer="{tmp}/none.mid"),
        ui_message="is not a file",
        outputs=(MID,),
    ),
    Case(
        "primer-is-folder",
        "--primer a folder",
        "is a folder, not a MIDI file",
        api=melody(primer="{tmp}/folder"),
        cli=("generate", "melody", "--primer", "{tmp}/folder", "--out", MID),
        ui=compose(primer="{tmp}/folder"),
        ui_message="is not a file",
        outputs=(MID,),
    ),
    Case(
        "primer-zero-bytes",
        "a 0-byte .mid",
        "is empty (0 bytes)",
        api=melody(primer="{tmp}/empty.mid"),
        cli=("generate", "melody", "--primer", "{tmp}/empty.mid", "--out", MID),
        ui=compose(primer="{tmp}/empty.mid"),
        outputs=(MID,),
    ),
    Case(
        "primer-truncated",
        "a .mid cut in half",
        "is not a readable MIDI file",
        api=melody(primer="{tmp}/cut.mid"),
        cli=("generate", "melody", "--primer", "{tmp}/cut.mid", "--out", MID),
        ui=compose(primer="{tmp}/cut.mid"),
        outputs=(MID,),
    ),
    Case(
        "primer-corrupt",
        "a .mid with garbage after the header",
        "is not a readable MIDI file",
        api=melody(primer="{tmp}/corrupt.mid"),
        cli=("generate", "melody", "--primer", "{tmp}/corrupt.mid", "--out", MID),
        ui=compose(primer="{tmp}/corrupt.mid"),
        outputs=(MID,),
    ),
    Case(
        "primer-not-midi",
        "a text file named .mid",
        "is not a MIDI file (no MThd header)",
        api=melody(primer="{tmp}/text.mid"),
        cli=("generate", "melody", "--primer", "{tmp}/text.mid", "--out", MID),
        ui=compose(primer="{tmp}/text.mid"),
        outputs=(MID,),
    ),
    Case(
        "primer-text-suffix",
        "a .txt file as primer",
        "MIDI file",
        api=melody(primer="{tmp}/songs.txt"),
        ui=compose(primer="{tmp}/songs.txt"),
        ui_message="The primer must be a MIDI file (.mid)",
    ),
    Case(
        "primer-huge",
        "a 20 MB .mid",
        "more than a MIDI melody can be",
        api=melody(primer="{tmp}/huge.mid"),
        cli=("generate", "melody", "--primer", "{tmp}/huge.mid", "--out", MID),
        ui=compose(primer="{tmp}/huge.mid"),
        outputs=(MID,),
    ),
    Case(
        "midi-set-missing",
        "eval --midi a folder that does not exist",
        "is neither a MIDI file, a folder nor a corpus name",
        api=midi_files("{tmp}/no-such-folder"),
        cli=("eval", "--midi", "{tmp}/no-such-folder", "--reference", "{tmp}/midis"),
    ),
    Case(
        "midi-set-unusable",
        "eval --midi a folder of corrupt/empty/non-MIDI files",
        "no usable MIDI files",
        api=midi_files("{tmp}/bad-midis"),
        cli=("eval", "--midi", "{tmp}/bad-midis", "--reference", "{tmp}/midis"),
    ),
    Case(
        "midi-without-reference",
        "eval --midi without --reference",
        "--midi needs --reference",
        cli=("eval", "--midi", "{tmp}/midis"),
    ),
    # -- output files -----------------------------------------------------------------------
    Case(
        "out-is-folder",
        "--out a folder",
        "is a folder: give a file name",
        cli=("generate", "melody", "--out", "{tmp}/folder"),
    ),
    Case(
        "out-wrong-suffix",
        "--out tune.txt",
        "must end in .mid",
        cli=("generate", "melody", "--out", "{tmp}/tune.txt"),
        outputs=("{tmp}/tune.txt",),
    ),
    Case(
        "out-folder-missing",
        "--out in a folder that does not exist",
        "does not exist: create it first",
        cli=("generate", "melody", "--out", "{tmp}/nope/tune.mid"),
        outputs=("{tmp}/nope",),
    ),
    Case(
        "wav-is-folder",
        "--wav a folder (with a good --out)",
        "--wav",
        cli=("generate", "melody", "--out", MID, "--wav", "{tmp}/folder"),
        outputs=(MID,),
    ),
    Case(
        "out-for-text",
        "--out with lyrics",
        "writes melody files",
        cli=("generate", "lyrics", "x", "--out", MID),
        outputs=(MID,),
    ),
    # -- models -----------------------------------------------------------------------------
    Case(
        "model-missing",
        "--model a folder that does not exist",
        "does not exist",
        api=gen("lyrics", model="{tmp}/no-model"),
        cli=("generate", "lyrics", "x", "--model", "{tmp}/no-model"),
        ui=write(model="{tmp}/no-model"),
        ui_message="outside the folders this app loads models from",
    ),
    Case(
        "model-not-a-model",
        "--model a folder without config.json",
        "is not a model directory",
        api=gen("lyrics", model="{tmp}/folder"),
        cli=("generate", "lyrics", "x", "--model", "{tmp}/folder"),
        ui=write(model="{runs}/not-a-model"),
    ),
    Case(
        "model-is-a-file",
        "--model a file",
        "is not a model directory",
        api=gen("poem", model="{tmp}/songs.txt"),
        cli=("generate", "poem", "x", "--model", "{tmp}/songs.txt"),
    ),
    Case(
        "model-pickled",
        "a model folder with only pytorch_model.bin",
        "has only pickled weights",
        api=gen("lyrics", model="{tmp}/pickled"),
        cli=("generate", "lyrics", "x", "--model", "{tmp}/pickled"),
        ui=write(model="{runs}/pickled"),
    ),
    Case(
        "model-melody-run-for-text",
        "a melody run dir for lyrics",
        "is a melody run, not a text model",
        api=gen("lyrics", model="{melody_run}"),
        cli=("generate", "lyrics", "x", "--model", "{melody_run}"),
        ui=write(model="{runs}/melody-run"),
    ),
    Case(
        "model-text-run-for-melody",
        "a lyrics run dir for melody",
        "is a lyrics run, not a melody model",
        api=melody(model="{lyrics_run}"),
        cli=("generate", "melody", "--model", "{lyrics_run}", "--out", MID),
        ui=compose(model="{runs}/lyrics-run"),
        outputs=(MID,),
    ),
    Case(
        "model-text-model-for-melody",
        "a text model folder for melody",
        "is not a melody model",
        api=melody(model="{model}"),
        cli=("generate", "melody", "--model", "{model}", "--out", MID),
        outputs=(MID,),
    ),
    Case(
        "model-outside-app-roots",
        "a model path outside the app's folders",
        "outside the folders this app loads",
        ui=write(model="{tmp}/../.."),
    ),
    Case(
        "model-symlink-escape",
        "a link in the runs folder to a model elsewhere",
        "outside the folders this app loads",
        ui=write(model="{runs}/link-out"),
    ),
    Case(
        "quantize-unknown",
        "quantize=int4",
        "the only option is int8",
        api=load("lyrics", "{model}", quantize="int4"),
        cli=("generate", "lyrics", "x", "--quantize", "int4"),
    ),
    # -- configs (train) --------------------------------------------------------------------
    Case(
        "config-missing",
        "train a YAML that does not exist",
        "config file not found",
        api=train("{tmp}/none.yaml"),
        cli=("train", "{tmp}/none.yaml"),
        outputs=(RUN,),
    ),
    Case(
        "config-is-folder",
        "train a folder",
        "is a folder, not a config file",
        api=train("{tmp}/folder"),
        cli=("train", "{tmp}/folder"),
        outputs=(RUN,),
    ),
    Case(
        "config-syntax-error",
        "YAML with a syntax error",
        "invalid YAML at line",
        api=train("{tmp}/syntax.yaml"),
        cli=("train", "{tmp}/syntax.yaml"),
        outputs=(RUN,),
    ),
    Case(
        "config-unknown-key",
        "train.learning_rate (no such key)",
        "unknown config key 'train.learning_rate'",
        api=train("{tmp}/unknown.yaml"),
        cli=("train", "{tmp}/unknown.yaml"),
        outputs=(RUN,),
    ),
    Case(
        "config-wrong-type",
        "train.lr: fast",
        "train.lr: expected float",
        api=train("{tmp}/types.yaml"),
        cli=("train", "{tmp}/types.yaml"),
        outputs=(RUN,),
    ),
    Case(
        "config-section-not-mapping",
        "train: 5",
        "'train' is a section",
        api=train("{tmp}/section.yaml"),
        cli=("train", "{tmp}/section.yaml"),
        outputs=(RUN,),
    ),
    Case(
        "config-not-utf8",
        "a Latin-1 YAML file",
        "not UTF-8",
        api=train("{tmp}/latin1.yaml"),
        cli=("train", "{tmp}/latin1.yaml"),
        outputs=(RUN,),
    ),
    Case(
        "config-huge",
        "a 2 MB YAML file",
        "a config holds a few settings",
        api=train("{tmp}/huge.yaml"),
        cli=("train", "{tmp}/huge.yaml"),
        outputs=(RUN,),
    ),
    Case(
        "config-absurd-value",
        "train.batch_size=0",
        "train.batch_size: must be from 1",
        api=train("{tmp}/ok.yaml", "train.batch_size=0"),
        cli=("train", "{tmp}/ok.yaml", "train.batch_size=0"),
        outputs=(RUN,),
    ),
    Case(
        "config-nan",
        "train.lr=nan",
        "train.lr: expected a finite number",
        api=train("{tmp}/ok.yaml", "train.lr=nan"),
        cli=("train", "{tmp}/ok.yaml", "train.lr=nan"),
        outputs=(RUN,),
    ),
    Case(
        "override-malformed",
        "override 'lr' without =",
        "must look like section.key=value",
        api=train("{tmp}/ok.yaml", "lr"),
        cli=("train", "{tmp}/ok.yaml", "lr"),
        outputs=(RUN,),
    ),
    Case(
        "config-unknown-task",
        "task: songs",
        "task: unknown task 'songs'",
        api=train("{tmp}/ok.yaml", "task=songs"),
        cli=("train", "{tmp}/ok.yaml", "task=songs"),
        outputs=(RUN,),
    ),
    # -- training data ----------------------------------------------------------------------
    Case(
        "data-missing",
        "data.path that does not exist",
        "data path not found",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/none.txt"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/none.txt"),
        outputs=(RUN,),
    ),
    Case(
        "data-empty-file",
        "a 0-byte .txt",
        "file is empty",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/empty.txt"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/empty.txt"),
        ui=upload("{tmp}/empty.txt"),
        outputs=(RUN,),
    ),
    Case(
        "data-binary",
        "a binary file named .txt",
        "a binary file, not text",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/binary.txt"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/binary.txt"),
        ui=upload("{tmp}/binary.txt"),
        outputs=(RUN,),
    ),
    Case(
        "data-not-utf8",
        "a Latin-1 .txt",
        "not UTF-8 text (bad byte at line 2): re-save it as UTF-8",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/latin1.txt"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/latin1.txt"),
        ui=upload("{tmp}/latin1.txt"),
        outputs=(RUN,),
    ),
    Case(
        "data-no-usable-text",
        "a .txt of one-word documents",
        "no usable text",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/short.txt"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/short.txt"),
        ui=upload("{tmp}/short.txt"),
        outputs=(RUN,),
    ),
    Case(
        "jsonl-broken-line",
        "a .jsonl whose line 2 is cut off",
        "line 2 is not valid JSON",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/broken.jsonl"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/broken.jsonl"),
        ui=upload("{tmp}/broken.jsonl"),
        outputs=(RUN,),
    ),
    Case(
        "jsonl-missing-field",
        "a .jsonl record without 'text'",
        "line 2: no field 'text' (fields: lyrics)",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/nofield.jsonl"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/nofield.jsonl"),
        ui=upload("{tmp}/nofield.jsonl"),
        outputs=(RUN,),
    ),
    Case(
        "jsonl-wrong-type",
        'a .jsonl with "text": {"a": 1}',
        "field 'text' must be text or a list of texts",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/types.jsonl"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/types.jsonl"),
        outputs=(RUN,),
    ),
    Case(
        "jsonl-not-objects",
        "a .jsonl of bare strings",
        "each record must be a JSON object",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/strings.jsonl"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/strings.jsonl"),
        outputs=(RUN,),
    ),
    Case(
        "csv-missing-field",
        "a .csv without a text column",
        "no field 'text' (fields: lyrics, title)",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/nofield.csv"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/nofield.csv"),
        ui=upload("{tmp}/nofield.csv"),
        outputs=(RUN,),
    ),
    Case(
        "csv-ragged-row",
        "a .csv row with an unquoted comma",
        "line 3 has 3 fields but the header has 2",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/ragged.csv"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/ragged.csv"),
        ui=upload("{tmp}/ragged.csv"),
        outputs=(RUN,),
    ),
    Case(
        "data-unsupported-type",
        "data.path a .pdf",
        "unsupported file type '.pdf'",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/book.pdf"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/book.pdf"),
        ui=upload("{tmp}/book.pdf"),
        ui_message="is not a training file",
        outputs=(RUN,),
    ),
    Case(
        "data-empty-folder",
        "data.path a folder without text files",
        "folder holds no .txt",
        api=train("{tmp}/ok.yaml", "data.path={tmp}/folder"),
        cli=("train", "{tmp}/ok.yaml", "data.path={tmp}/folder"),
        outputs=(RUN,),
    ),
    Case(
        "eval-data-missing",
        "eval --data that does not exist",
        "data path not found",
        cli=("eval", "{model}", "--data", "{tmp}/none.txt"),
    ),
    Case(
        "eval-nothing",
        "eval without --data/--text/--midi",
        "give --data FILE",
        cli=("eval", "{model}"),
    ),
    # -- text files for eval ----------------------------------------------------------------
    Case(
        "text-missing",
        "eval --text that does not exist",
        "text file not found",
        api=text_report("{tmp}/none.txt"),
        cli=("eval", "--text", "{tmp}/none.txt"),
    ),
    Case(
        "text-is-folder",
        "eval --text a folder",
        "is a folder: give one text file",
        api=text_report("{tmp}/folder"),
        cli=("eval", "--text", "{tmp}/folder"),
    ),
    Case(
        "text-binary",
        "eval --text a binary file",
        "a binary file, not text",
        api=text_report("{tmp}/binary.txt"),
        cli=("eval", "--text", "{tmp}/binary.txt"),
    ),
    Case(
        "text-not-utf8",
        "eval --text a Latin-1 file",
        "not UTF-8 text",
        api=text_report("{tmp}/latin1.txt"),
        cli=("eval", "--text", "{tmp}/latin1.txt"),
    ),
    Case(
        "text-huge",
        "eval --text a 6 MB file",
        "give one song, poem or story",
        api=text_report("{tmp}/huge.txt"),
        cli=("eval", "--text", "{tmp}/huge.txt"),
    ),
    Case(
        "text-bad-rhyme",
        "eval --text --rhyme AB1B",
        "rhyme scheme 'AB1B'",
        cli=("eval", "--text", "{tmp}/songs.txt", "--rhyme", "AB1B"),
    ),
    # -- the app's uploads ------------------------------------------------------------------
    Case("upload-none", "Train with no file", "Upload a training file first", ui=upload(None)),
    Case(
        "upload-outside",
        "an upload path outside Gradio's upload folder",
        "is not an uploaded file",
        ui=upload(str(ROOT / "pyproject.toml")),
    ),
    Case(
        "upload-too-large",
        "a 101 MB upload",
        "uploads are limited to 100 MB",
        ui=upload("{tmp}/big.txt"),
    ),
    Case(
        "upload-wrong-task",
        "a .mid for the lyrics task",
        "trains on text files",
        ui=upload("{tmp}/tune.mid"),
    ),
    Case(
        "zip-corrupt",
        "a .zip that is not a zip",
        "is not a valid zip file",
        ui=upload("{tmp}/corrupt.zip"),
    ),
    Case(
        "zip-bomb",
        "a .zip member that expands 1000x",
        "looks like a zip bomb",
        ui=upload("{tmp}/bomb.zip"),
    ),
    Case(
        "zip-too-large",
        "a .zip that expands past 200 MB",
        "expands to more than 200 MB",
        ui=upload("{tmp}/large.zip"),
    ),
    Case(
        "zip-too-many-files",
        "a .zip of 5001 files",
        "at most 5000 per zip",
        ui=upload("{tmp}/many.zip"),
    ),
    Case(
        "zip-without-training-files",
        "a .zip of images for lyrics",
        "holds no .csv or .json or .jsonl or .md or .txt files for the lyrics task: zip the",
        ui=upload("{tmp}/images.zip"),
    ),
    Case(
        "train-from-style",
        "Start from a style adapter",
        "not from a style adapter",
        ui=upload("{tmp}/songs.txt", base="style:hymn"),
    ),
    Case(
        "train-steps-absurd",
        "Steps 1000000",
        "Steps must be at most 10000",
        ui=upload("{tmp}/songs.txt", steps=10**6),
    ),
    Case(
        "demo-model-root-missing",
        "demo --model-root a missing folder",
        "--model-root",
        cli=("demo", "--model-root", "{tmp}/none"),
    ),
]


# ---- the fixture files ---------------------------------------------------------------------
class Env:
    def __init__(self, tmp: Path, model: Path, melody: Path, app):
        self.tmp, self.model, self.melody, self.app = tmp, model, melody, app
        self.paths = {
            "tmp": str(tmp),
            "model": str(model),
            "melody": str(melody),
            "runs": str(app.runs_dir),
            "lyrics_run": str(tmp / "lyrics-run"),
            "melody_run": str(tmp / "melody-run"),
        }

    def fill(self, value: str) -> str:
        return value.format(**self.paths) if isinstance(value, str) else value


def make_files(tmp: Path, model: Path, melody: Path, runs: Path) -> None:
    (tmp / "folder").mkdir()
    (tmp / "songs.txt").write_text(
        "rain on the window pane\nand the city hums along\n\nanother song about the sea\n"
    )
    (tmp / "short.txt").write_text("a\n\nb\n\nc\n")
    (tmp / "empty.txt").write_bytes(b"")
    (tmp / "empty.mid").write_bytes(b"")
    (tmp / "binary.txt").write_bytes(
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;" + bytes(range(1, 9)) * 8
    )  # NULs, valid UTF-8
    (tmp / "latin1.txt").write_bytes(
        "first line\ncaf\u00e9 au lait, tr\u00e8s bien\n".encode("latin-1")
    )
    (tmp / "book.pdf").write_bytes(b"%PDF-1.4\n")
    (tmp / "broken.jsonl").write_text('{"text": "one two three four"}\n{"text": "five six\n')
    (tmp / "nofield.jsonl").write_text(
        '{"text": "one two three four"}\n{"lyrics": "five six seven"}\n'
    )
    (tmp / "types.jsonl").write_text('{"text": {"a": 1}}\n')
    (tmp / "strings.jsonl").write_text('"one two three"\n')
    (tmp / "nofield.csv").write_text("lyrics,title\nsome words here,x\n")
    (tmp / "ragged.csv").write_text('text,title\n"one two three",a\nfour, five six,b\n')
    (tmp / "huge.txt").write_bytes(b"")
    with (tmp / "huge.txt").open("r+b") as f:
        f.truncate(6 * 2**20)  # sparse: instant, no disk
    (tmp / "big.txt").write_bytes(b"")
    with (tmp / "big.txt").open("r+b") as f:
        f.truncate(101 * 2**20)
    tune = write_midi(tmp / "tune.mid", [62, 64, 65, 67, 69, 67, 65, 64])
    (tmp / "midis").mkdir()
    write_midi(tmp / "midis" / "a.mid", [60, 62, 64, 65, 67])
    data = tune.read_bytes()
    (tmp / "cut.mid").write_bytes(data[: len(data) // 2])
    (tmp / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06 this is not a midi file" * 3)
    (tmp / "text.mid").write_text("la la la, not a MIDI file\n")
    (tmp / "huge.mid").write_bytes(data)
    with (tmp / "huge.mid").open("r+b") as f:
        f.truncate(20 * 2**20)
    (tmp / "bad-midis").mkdir()
    for name in ("empty.mid", "cut.mid", "corrupt.mid", "text.mid"):
        shutil.copy(tmp / name, tmp / "bad-midis" / name)
    # configs
    ok = (
        f"task: poem\nmodel:\n  name: {model}\n  lora: false\ndata:\n  path: {tmp / 'songs.txt'}\n  block_size: 64\n"
        "train:\n  max_steps: 1\n  batch_size: 2\n  samples: 0\n"
    )
    (tmp / "ok.yaml").write_text(ok)
    (tmp / "syntax.yaml").write_text("task: [lyrics\nmodel:\n  name: x\n")
    (tmp / "unknown.yaml").write_text("train:\n  learning_rate: 0.1\n")
    (tmp / "types.yaml").write_text("train:\n  lr: fast\n")
    (tmp / "section.yaml").write_text("train: 5\n")
    (tmp / "latin1.yaml").write_bytes("task: lyrics\n# caf\u00e9\n".encode("latin-1"))
    (tmp / "huge.yaml").write_text("# padding\n" * (2 * 2**20 // 10))
    # models: runs of each task, a pickled-only folder, a folder that is not a model, a link out
    for where in (tmp, runs):
        shutil.copytree(model, where / "lyrics-run")
        (where / "lyrics-run" / "museforge.json").write_text(json.dumps({"task": "lyrics"}))
        shutil.copytree(melody, where / "melody-run")
        (where / "melody-run" / "museforge.json").write_text(json.dumps({"task": "melody"}))
        (where / "pickled").mkdir()
        shutil.copy(model / "config.json", where / "pickled" / "config.json")
        (where / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
    (runs / "not-a-model").mkdir()
    (runs / "link-out").symlink_to(tmp / "lyrics-run")
    # zips
    (tmp / "corrupt.zip").write_bytes(b"PK not a zip")
    with zipfile.ZipFile(tmp / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("songs.txt", b"\n" * (20 * 2**20))  # 20 MB of newlines -> ~20 KB
    with zipfile.ZipFile(tmp / "large.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("songs.txt", b"la " * (71 * 2**20))  # 213 MB declared
    with zipfile.ZipFile(tmp / "many.zip", "w") as z:
        for i in range(5001):
            z.writestr(f"s{i}.txt", "a song")
    with zipfile.ZipFile(tmp / "images.zip", "w") as z:
        z.writestr("cover.png", b"\x89PNG")


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model_dir):
    from ui_support import make_app, tiny_melody_dir

    tmp = tmp_path_factory.mktemp("bad")
    runs = tmp_path_factory.mktemp("bad-runs")
    app = make_app(tiny_model_dir, runs).museforge
    app.upload_dirs.append(tmp)  # the fixture files stand in for uploads
    make_files(tmp, Path(tiny_model_dir), tiny_melody_dir(), runs)
    # what `museforge` does at start (cli._quiet_libraries): the libraries' progress bars stay off stderr
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    yield Env(tmp, Path(tiny_model_dir), tiny_melody_dir(), app)
    hf_logging.enable_progress_bar()
    datasets.enable_progress_bars()


def _items(entry: str):
    return [pytest.param(c, id=c.id) for c in CASES if getattr(c, entry) is not None]


def _clean(env, case):
    for p in case.outputs:
        path = Path(env.fill(p))
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _left_behind(env, case) -> list[str]:
    return [env.fill(p) for p in case.outputs if Path(env.fill(p)).exists()]


@pytest.mark.parametrize("case", _items("api"))
def test_api(env, case):
    from museforge import UserError

    _clean(env, case)
    with pytest.raises(UserError) as e:
        case.api(env)
    message = str(e.value)
    assert case.message in message and "\n" not in message, message
    assert not _left_behind(env, case)


@pytest.mark.parametrize("case", _items("cli"))
def test_cli(env, case, monkeypatch):
    from typer.testing import CliRunner

    from museforge.cli import app

    monkeypatch.chdir(env.tmp)  # a default output (melody.mid) would land here
    _clean(env, case)
    before = set(env.tmp.iterdir())
    r = CliRunner().invoke(app, [env.fill(a) for a in case.cli])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("museforge: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert case.message in r.stderr and "Traceback" not in r.output, r.stderr
    assert not _left_behind(env, case) and set(env.tmp.iterdir()) == before  # nothing new at all


@pytest.mark.parametrize("case", _items("ui"))
def test_ui(env, case):
    from museforge.ui import gr

    runs = set(env.app.runs_dir.iterdir())
    with pytest.raises(gr.Error) as e:
        result = case.ui(env)
        if inspect.isgenerator(result):
            list(result)
    message = e.value.message
    assert (case.ui_message or case.message) in message and "\n" not in message, message
    assert set(env.app.runs_dir.iterdir()) == runs  # no half-made run


# ---- the docs table --------------------------------------------------------------------------
def markdown() -> str:
    counts = {e: sum(getattr(c, e) is not None for c in CASES) for e in ("api", "cli", "ui")}
    lines = [
        "# Bad inputs and what museforge answers",
        "",
        "Generated from `tests/test_bad_inputs.py` (`python tests/test_bad_inputs.py`); a test fails when",
        "this file and the cases drift apart. Every answer is one line naming the input and the fix:",
        "the Python API raises `museforge.UserError` (a `ValueError`), the CLI prints",
        "`museforge: error: ...` on stderr and exits with code 2 (no traceback), the app shows one",
        "`gr.Error`. No output file or run directory is left behind.",
        "",
        f"{len(CASES)} bad inputs; {sum(counts.values())} checks: {counts['api']} through the Python API, "
        f"{counts['cli']} through the CLI, {counts['ui']} through the app's handlers.",
        "",
        "| case | bad input | API | CLI | app | the answer contains |",
        "|---|---|---|---|---|---|",
    ]
    for c in CASES:
        answer = f"`{c.message}`" + (f" (app: `{c.ui_message}`)" if c.ui_message else "")
        marks = ["✓" if getattr(c, e) is not None else "" for e in ("api", "cli", "ui")]
        lines.append(
            f"| {c.id} | {c.input.replace('|', '/')} | {' | '.join(marks)} | {answer.replace('|', '/')} |"
        )
    lines += [
        "",
        "Policies behind some answers:",
        "",
        "- A prompt that fills the model's whole context is refused, not cut: cutting from the left would drop",
        "  the instruction. A prompt that fits is kept whole and the output is capped to the room it leaves.",
        "- Weights load from safetensors only; a folder with only pickled weights (`.bin`, `.pt`) is refused",
        "  with the command that converts it. `trust_remote_code` is off unless `--trust-remote-code` /",
        "  `model.trust_remote_code: true`.",
        "- The app loads typed model paths only from its runs, museforge's cache, the models it was started",
        "  with and `--model-root` folders (symlinks and `..` resolved first); uploads are read only from",
        "  Gradio's upload folder, at most 100 MB each; a zip may hold 5000 training files and expand to",
        "  200 MB, and no member may expand more than 100x.",
        "- Training data has no size limit (it is your own machine); a config is at most 1 MB, an",
        "  `eval --text` file 5 MB, a MIDI file 16 MB.",
        "",
    ]
    return "\n".join(lines)


def test_docs_match_the_cases():
    assert DOC.read_text() == markdown(), "run: python tests/test_bad_inputs.py"


def test_every_case_has_an_entry_point_and_a_unique_id():
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(c.api or c.cli or c.ui for c in CASES)


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(markdown())
    print(f"wrote {DOC}")
