"""The command line: parse, call the Python API, print. No logic lives here.

    museforge generate lyrics "rain on a city night" --seed 1
    museforge generate story --image photo.jpg --seed 1
    museforge identify photo.jpg
    museforge train configs/tiny.yaml data.path=data/lyrics.txt
    museforge eval runs/lyrics-... --task lyrics --data data/lyrics.txt
    museforge models

Errors the user can fix print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from museforge.errors import UserError


class Group(TyperGroup):
    """Turns problems the user can fix into one line on stderr and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _user_errors() as e:
            text = str(e).strip()
            typer.echo(f"museforge: error: {text.splitlines()[0] if text else type(e).__name__}", err=True)
            raise typer.Exit(code=2) from None


app = typer.Typer(cls=Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="museforge: lyrics, poems, stories and melodies.")

Opt = typer.Option


def _user_errors() -> tuple[type[BaseException], ...]:
    from museforge.config import ConfigError
    from museforge.data import DataError
    from museforge.models import ModelNotFoundError

    # the run dir is unwritable or its disk full (only training raises it: no torch import otherwise)
    training = sys.modules.get("museforge.training")
    run_dir = (training.RunDirError,) if training else ()
    return (UserError, ConfigError, DataError, ModelNotFoundError, ValueError, TypeError, FileNotFoundError, *run_dir)


@app.command()
def generate(
    task: Annotated[str, typer.Argument(help="lyrics, poem, story or melody")],
    prompt: Annotated[str, typer.Argument(help="topic / premise (not used by melody)")] = "",
    model: Annotated[str, Opt(help="model id, local dir or run dir")] = "default",
    style: Annotated[str, Opt(help="a shipped style adapter (e.g. hymn) or a style tag")] = "",
    seed: Annotated[int | None, Opt(help="same seed -> same output")] = None,
    max_new_tokens: Annotated[int | None, Opt()] = None,
    temperature: Annotated[float | None, Opt()] = None,
    top_p: Annotated[float | None, Opt()] = None,
    top_k: Annotated[int | None, Opt()] = None,
    repetition_penalty: Annotated[float | None, Opt()] = None,
    no_repeat_ngram_size: Annotated[int | None, Opt()] = None,
    num: Annotated[int | None, Opt("--num", "--num-return-sequences", help="number of samples")] = None,
    rhyme: Annotated[str | None, Opt(help="rhyme scheme, e.g. AABB, ABAB, ABCB, AAAA or free")] = None,
    sections: Annotated[str | None, Opt(help='song structure, e.g. "verse chorus verse chorus" or "V C V C B C"')] = None,
    syllables: Annotated[str | None, Opt(help="syllables per line: 8, 8-10 or 8/6/8/6")] = None,
    form: Annotated[str | None, Opt(help="poem form: sonnet, haiku, limerick, ballad, free")] = None,
    length: Annotated[str | None, Opt(help="story length: short, medium, long")] = None,
    key: Annotated[str | None, Opt(help='melody key, e.g. "D minor"')] = None,
    tempo: Annotated[int | None, Opt(help="melody tempo in bpm")] = None,
    time_signature: Annotated[str | None, Opt(help="melody time signature, e.g. 6/8")] = None,
    bars: Annotated[int | None, Opt(help="melody length in bars")] = None,
    instrument: Annotated[str | None, Opt(help="melody instrument (GM name or program number)")] = None,
    primer: Annotated[Path | None, Opt(help="MIDI file to continue")] = None,
    out: Annotated[Path | None, Opt(help="melody: write the .mid here")] = None,
    wav: Annotated[Path | None, Opt(help="melody: also render audio to this .wav")] = None,
    png: Annotated[Path | None, Opt(help="melody: also draw the piano roll to this .png")] = None,
    quantize: Annotated[str, Opt(help="int8: int8 weights for faster CPU decoding (opt-in; outputs change slightly)")] = "",
    image: Annotated[Path | None, Opt(help="write from this picture: what is in it joins the prompt (not melody)")] = None,
    vision_model: Annotated[str | None, Opt(help="with --image: a Hugging Face image-classification or captioning model")] = None,
    trust_remote_code: Annotated[bool, Opt(help="let a Hub model run its own Python code (only for models you trust)")] = False,
    as_json: Annotated[bool, Opt("--json", help="print outputs with provenance as JSON")] = False,
) -> None:
    """Generate lyrics, a poem, a story (from a prompt and/or --image) or a melody."""
    from museforge.generation import check_request, load_generator
    from museforge.tasks import get_task

    kwargs: dict[str, Any] = dict(seed=seed, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                  top_k=top_k, repetition_penalty=repetition_penalty,
                                  no_repeat_ngram_size=no_repeat_ngram_size, num_return_sequences=num)
    task_opts = dict(rhyme=rhyme, sections=sections, syllables=syllables, form=form, length=length, key=key,
                     tempo=tempo, time_signature=time_signature, bars=bars, instrument=instrument,
                     primer=str(primer) if primer else None)
    kwargs.update({k: v for k, v in task_opts.items() if v is not None})
    t = get_task(task)
    _check_outputs(task, out, wav, png)  # before any model loads or file is written
    if task != "melody" and not prompt.strip() and image is None:
        raise UserError(f"give a prompt: museforge generate {task} \"a topic\" (or --image FILE)")
    if image is not None or vision_model:
        if task == "melody":
            raise UserError("--image works with lyrics, poem and story, not melody")
        if image is None:
            raise UserError("--vision-model needs --image FILE: the picture to look at")
        from museforge.vision import identify

        kwargs["image"] = seen = identify(image, vision_model=vision_model or "default")  # before the LM loads
        typer.echo(f"museforge: seen in {image}: {seen.description}", err=True)
    shipped = task == "melody" or _is_shipped_style(task, style)
    if style and not shipped and "style" in t.options:
        kwargs["style"] = style  # a free style tag, part of the prompt
    check_request(t, prompt, **kwargs)
    gen = load_generator(task, model, style if shipped else "", quantize=quantize, trust_remote_code=trust_remote_code)
    result = gen.generate(prompt, **kwargs)
    outputs = result if isinstance(result, list) else [result]
    if task == "melody":
        outputs = _save_melodies(outputs, out, wav, png)
    if as_json:
        typer.echo(json.dumps([o.to_dict() for o in outputs], indent=2, default=str))
    else:
        typer.echo("\n\n".join(str(o) for o in outputs))


def _is_shipped_style(task: str, style: str) -> bool:
    if not style:
        return False
    from museforge.styles import available_styles

    return style in available_styles(task)


def _check_outputs(task: str, out: Path | None, wav: Path | None, png: Path | None) -> None:
    """Output files must be files with the right suffix in an existing folder (checked before any work)."""
    given = {"--out": (out, ".mid"), "--wav": (wav, ".wav"), "--png": (png, ".png")}
    for flag, (path, suffix) in given.items():
        if path is None:
            continue
        if task != "melody":
            raise UserError(f"{flag} writes melody files: drop it, or run museforge generate melody {flag} {path}")
        if path.is_dir():
            raise UserError(f"{flag} {path} is a folder: give a file name, e.g. {path / ('melody' + suffix)}")
        if path.suffix.lower() not in ({".mid", ".midi"} if suffix == ".mid" else {suffix}):
            raise UserError(f"{flag} {path}: the file name must end in {suffix}, e.g. {path.with_suffix(suffix)}")
        if not path.parent.is_dir():
            raise UserError(f"{flag} {path}: the folder {path.parent} does not exist: create it first")


def _save_melodies(outputs: list, out: Path | None, wav: Path | None, png: Path | None) -> list:
    def numbered(p: Path, i: int) -> Path:
        return p.with_name(f"{p.stem}-{i + 1}{p.suffix}") if len(outputs) > 1 else p

    for i, m in enumerate(outputs):
        m.save(numbered(out or Path("melody.mid"), i))
        if wav:
            m.save_audio(numbered(wav, i))
        if png:
            m.piano_roll(numbered(png, i))
    return outputs


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="a YAML config (configs/*.yaml)")],
    resume: Annotated[bool, Opt(help="continue the run in train.out_dir from its last checkpoint")] = False,
) -> None:
    """Fine-tune (or train from scratch) with one config; extra args are dotted overrides (train.lr=1e-4)."""
    import shlex

    from museforge.training import TrainingInterrupted
    from museforge.training import train as run_train

    overrides = list(ctx.args) + (["train.resume=true"] if resume else [])
    try:
        run = run_train(config, overrides)
    except TrainingInterrupted as e:  # Ctrl-C: a checkpoint was saved; say how to go on
        kept = [o for o in ctx.args if not o.startswith(("train.out_dir=", "train.resume="))]
        again = shlex.join(["museforge", "train", str(config), *kept, f"train.out_dir={e.run}", "--resume"])
        if e.main:  # one line, not one per process
            typer.echo(f"museforge: interrupted at step {e.step}; checkpoint saved to {e.checkpoint}; "
                       f"resume with: {again}", err=True)
        raise typer.Exit(code=130) from None
    except KeyboardInterrupt:  # outside the loop, or a second Ctrl-C: complete checkpoints stay as they were
        typer.echo("museforge: interrupted; no checkpoint was saved now (earlier complete ones are kept)", err=True)
        raise typer.Exit(code=130) from None
    typer.echo(str(run))


@app.command("eval")
def evaluate(
    model: Annotated[str, typer.Argument(help="run dir, model id or 'default'")] = "default",
    task: Annotated[str, Opt(help="lyrics, poem, story or melody")] = "lyrics",
    data: Annotated[str | None, Opt(help="held-out data: perplexity of the model on it")] = None,
    text: Annotated[Path | None, Opt(help="a generated/given text file: its quality metrics")] = None,
    rhyme: Annotated[str | None, Opt()] = None,
    syllables: Annotated[str | None, Opt()] = None,
    sections: Annotated[str | None, Opt()] = None,
    training: Annotated[Path | None, Opt(help="training text for the copy check")] = None,
    midi: Annotated[str | None, Opt(help="melody: a set of MIDI files (folder) whose music statistics to report")] = None,
    reference: Annotated[str | None, Opt(help="melody: the reference set (folder or corpus) to compare --midi with")] = None,
    samples: Annotated[int, Opt(help="melody: also generate N melodies and compare them with the --data pieces")] = 0,
    text_field: Annotated[str, Opt()] = "text",
    block_size: Annotated[int, Opt()] = 512,
    table: Annotated[bool, Opt(help="print a markdown table instead of JSON")] = False,
) -> None:
    """Held-out loss/perplexity of a model, and/or quality metrics of a text."""
    from museforge.evaluate import markdown_table

    if not data and not text and not midi:
        raise UserError("give --data FILE (perplexity of the model), --text FILE (metrics of a text) "
                        "or --midi FOLDER --reference FOLDER (music statistics)")
    report: dict[str, Any] = {}
    if data:
        if task == "melody":
            from museforge.tasks.melody import evaluate_melody

            report.update(evaluate_melody(model, data, samples=samples))
        else:
            from museforge.evaluate import perplexity

            report.update(perplexity(model, task, data, block_size=block_size, text_field=text_field))
    if midi:
        from museforge.music.corpus import load_midi_files
        from museforge.music.metrics import compare_sets

        if not reference:
            raise UserError("--midi needs --reference FOLDER_OR_CORPUS to compare with")
        generated, reference_set = load_midi_files(midi)[0], load_midi_files(reference)[0]
        report["music_statistics"] = compare_sets([s for _, s in generated], [s for _, s in reference_set])
        report["files"] = {"midi": len(generated), "reference": len(reference_set)}
    if text:
        from museforge.evaluate import text_report

        report.update(text_report(text, rhyme=rhyme, syllables=syllables, sections=sections, training=training))
    typer.echo(markdown_table([report]) if table else json.dumps(report, indent=2, default=str))


@app.command()
def identify(
    image: Annotated[Path, typer.Argument(help="an image file: JPEG, PNG, WebP, GIF, BMP, TIFF")],
    top: Annotated[int, Opt(help="how many labels to list")] = 5,
    vision_model: Annotated[str, Opt(help="'default' (EfficientNet-Lite0, ImageNet) or a Hugging Face "
                                          "image-classification or captioning model id or directory")] = "default",
    as_json: Annotated[bool, Opt("--json", help="print labels, description and mood as JSON")] = False,
) -> None:
    """What is in an image: labels with probabilities, a grouped description, and its mood."""
    from museforge.vision import identify as see
    from museforge.vision import mood_phrase

    seen = see(image, top=top, vision_model=vision_model)
    if as_json:
        typer.echo(json.dumps(seen.to_dict(), indent=2, ensure_ascii=False))
        return
    lines = [seen.description + (f"  (caption confidence {seen.confidence:.0%})" if seen.caption is not None else "")]
    lines += [f"  {p:6.1%}  {name}" for name, p in seen.labels]
    lines.append(f"mood: {mood_phrase(seen.mood)}")
    lines += [f"note: {n}" for n in seen.notes]
    typer.echo("\n".join(lines))


@app.command()
def models() -> None:
    """List the default, shipped and cached models."""
    from museforge.models import list_models

    for row in list_models():
        typer.echo(f"{row['name']:<32} {row['model']:<32} {row['where']}")


def _quiet_libraries() -> None:
    """Keep the terminal for museforge's own progress bars: hide per-file loading bars and
    benign warnings of the libraries underneath (library users keep their defaults)."""
    import logging
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    for name in ("accelerate", "transformers", "datasets", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


@app.command()
def demo(
    host: Annotated[str, Opt(help="interface to bind; 0.0.0.0 exposes the app to your network")] = "127.0.0.1",
    port: Annotated[int, Opt(help="port to serve on")] = 7860,
    model: Annotated[str, Opt(help="default model of the text tabs: model id, local dir or run dir")] = "default",
    melody_model: Annotated[str, Opt(help="default model of the Melody tab")] = "default",
    share: Annotated[bool, Opt("--share/--no-share", help="open a public gradio.live link (off by default)")] = False,
    model_root: Annotated[list[Path] | None, Opt(help="a folder whose models may be typed into the page (repeatable)")] = None,
) -> None:
    """Start the Gradio app (all tasks and fine-tuning) at http://HOST:PORT."""
    from museforge.ui import serve

    missing = [p for p in model_root or [] if not p.is_dir()]
    if missing:
        raise UserError(f"--model-root {missing[0]}: not a folder: give a folder that holds model directories")
    typer.echo(f"museforge: starting the app on http://{host}:{port} (Ctrl+C to stop)", err=True)
    serve(model=model, melody_model=melody_model, host=host, port=port, share=share, model_roots=model_root or [])


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    _quiet_libraries()
    try:
        app(args=argv, prog_name="museforge")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
