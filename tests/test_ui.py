"""The Gradio app's handlers, called directly on tiny models (no browser, no server)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

# ui_support comes first: it sets GRADIO_TEMP_DIR before gradio is imported
from ui_support import ROOT, make_app, write_midi

from museforge.ui import App, ModelCache, build_app, gr, new_session


@pytest.fixture(scope="module")
def app(tiny_model_dir, tmp_path_factory):
    app = make_app(tiny_model_dir, tmp_path_factory.mktemp("runs")).museforge
    app.upload_dirs += [tmp_path_factory.getbasetemp(), ROOT / "data"]  # the tests' files stand in for uploads
    return app


def sampling(seed=2, num=1, max_new_tokens=24, **kw):
    """Advanced-accordion values (seed 2: the untrained tiny model writes something, not EOS at once)."""
    args = dict(temperature=0.8, top_p=0.95, top_k=50, repetition_penalty=1.15, random_seed=False, seed=seed,
                num=num, max_new_tokens=max_new_tokens)
    args.update(kw)
    return App.sampling(**args)


def write(app, task="lyrics", prompt="rain on a city night", options=None, **kw):
    return list(app.write(task, prompt, "default", options or {}, sampling(**kw)))


def test_text_streams_and_records_provenance(app, tiny_model_dir):
    steps = write(app)
    assert len(steps) > 3  # the text arrives in pieces
    texts = [t for t, _ in steps]
    assert all(b.startswith(a.strip()) or not a for a, b in zip(texts, texts[1:], strict=False))
    text, provenance = steps[-1]
    assert text
    record = json.loads(provenance)
    assert record["prompt"] == "rain on a city night"
    assert record["seed"] == 2 and record["task"] == "lyrics"
    assert record["model"] == str(tiny_model_dir)


def test_same_seed_same_text_and_random_seed_recorded(app):
    assert write(app, seed=7)[-1][0] == write(app, seed=7)[-1][0]
    kw = sampling(random_seed=True, seed=7)
    assert isinstance(kw["seed"], int)
    text, prov = list(app.write("poem", "the sea", "default", {}, kw))[-1]
    assert json.loads(prov)["seed"] == kw["seed"]


def test_several_samples(app):
    text, prov = write(app, "poem", "a fox", {"style": "fable"}, num=2)[-1]
    assert "sample 2" in text
    records = json.loads(prov)
    assert [r["seed"] for r in records] == [2, 2]  # one seed, recorded on each sample
    assert records[0]["options"] == {"style": "fable"}


@pytest.mark.parametrize("task, options", [
    ("lyrics", {"style": "folk", "sections": "", "rhyme": "", "syllables": ""}),  # empty = the model's choice
    ("poem", {"form": ""}),
    ("story", {"length": "medium", "style": ""}),
])
def test_unset_options_are_not_passed(app, task, options):
    assert write(app, task, options=options, max_new_tokens=8)[-1][0] is not None


def test_lyric_craft_options(app):
    """Rhyme/sections/syllables reach the lyrics task (composed line by line)."""
    text, prov = write(app, "lyrics", options={"sections": "intro", "rhyme": "AAAA", "syllables": "4-8"})[-1]
    assert "[Intro]" in text
    assert json.loads(prov)["options"]["rhyme"] == "AAAA"
    text, prov = write(app, "poem", options={"form": "haiku"})[-1]
    assert len(text.splitlines()) == 3


@pytest.mark.parametrize("prompt, kw, message", [
    ("", {}, "Write a topic first"),
    ("   ", {}, "Write a topic first"),
    ("x" * 5000, {}, "keep it under"),
    ("rain", {"max_new_tokens": 100_000}, "Max new tokens"),
    ("rain", {"num": 50}, "Number of samples"),
])
def test_bad_input_is_one_clear_error(app, prompt, kw, message):
    with pytest.raises(gr.Error, match=message):
        write(app, prompt=prompt, **kw)


def test_api_errors_become_one_line(app):
    with pytest.raises(gr.Error, match="top_p must be in") as e:
        list(app.write("lyrics", "rain", "default", {}, sampling(top_p=0)))
    assert "\n" not in e.value.message
    with pytest.raises(gr.Error, match="outside the folders this app loads models from"):
        list(app.write("lyrics", "rain", "/no/such/model", {}, sampling()))
    with pytest.raises(gr.Error, match="outside the folders this app loads models from"):
        list(app.write("lyrics", "rain", str(ROOT / "configs"), {}, sampling()))
    with pytest.raises(gr.Error, match="does not exist"):
        list(app.write("lyrics", "rain", str(app.runs_dir / "no-such-run"), {}, sampling()))
    with pytest.raises(gr.Error, match="no shipped lyrics style"):
        list(app.write("lyrics", "rain", "style:nonesuch", {}, sampling()))
    assert write(app)[-1][0]  # and the app still works


def test_model_cache_shares_weights_between_text_tasks():
    loads = []

    class Fake:
        def __init__(self, task):
            self.task, self.model, self.tokenizer, self.source = type("T", (), {"name": task})(), object(), None, {}

    cache = ModelCache(lambda task, model, style: loads.append((task, model)) or Fake(task), size=2)
    a = cache.get("lyrics", "m")
    assert cache.get("lyrics", "m") is a
    cache.get("melody", "m")
    cache.get("lyrics", "n")  # evicts ("text", "m"): least recently used
    cache.get("lyrics", "m")
    assert loads == [("lyrics", "m"), ("melody", "m"), ("lyrics", "n"), ("lyrics", "m")]


# ---- melody -----------------------------------------------------------------------------------
def compose(app, session, primer=None, seed=3, **kw):
    args = dict(key="D minor", tempo=100, time_signature="4/4", bars=2, instrument="Violin", density="")
    args.update(kw)
    return app.melody(session, "default", primer=primer, sampling=sampling(seed=seed, max_new_tokens=None), **args)


def test_melody_outputs_audio_piano_roll_and_midi(app):
    session = new_session()
    wav, png, mids, summary, prov = compose(app, session)
    assert Path(wav).suffix == ".wav" and Path(wav).stat().st_size > 1000
    assert Path(png).read_bytes()[:4] == b"\x89PNG"
    assert len(mids) == 1 and Path(mids[0]).read_bytes()[:4] == b"MThd"
    assert summary and json.loads(prov)["seed"] == 3
    assert Path(wav).parent.name == session["id"]  # one folder per session
    assert session["last_melody"]["mid"] == mids[0]
    app.forget(session)  # what Gradio calls when the session ends
    assert not Path(wav).parent.exists()


def test_melody_regenerate_and_continue(app):
    session = new_session()
    with pytest.raises(gr.Error, match="Generate a melody first"):
        app.melody_again(session, continue_it=False)
    first = compose(app, session)
    again = app.melody_again(session, continue_it=False)
    assert again[2][0] != first[2][0]  # a new file, from a new seed
    assert json.loads(again[4])["options"].get("primer") is None
    more = app.melody_again(session, continue_it=True)
    assert json.loads(more[4])["options"]["primer"] == again[2][0]  # the last result is the primer


def test_melody_continues_an_uploaded_primer(app, tmp_path):
    primer = write_midi(tmp_path / "tune.mid", [62, 64, 65, 67, 69, 67, 65, 64])
    wav, png, mids, summary, prov = compose(app, new_session(), primer=str(primer))
    assert "primer" in summary and json.loads(prov)["options"]["primer"] == str(primer)


def test_melody_bad_inputs(app, tmp_path):
    session = new_session()
    text = tmp_path / "notes.txt"
    text.write_text("not music")
    with pytest.raises(gr.Error, match="must be a MIDI file"):
        compose(app, session, primer=str(text))
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06 this is not a midi file" * 3)
    with pytest.raises(gr.Error, match="not a readable MIDI file") as e:
        compose(app, session, primer=str(corrupt))
    assert "\n" not in e.value.message
    with pytest.raises(gr.Error, match="unknown key"):
        compose(app, session, key="H major")
    with pytest.raises(gr.Error, match="Bars must be"):
        compose(app, session, bars=500)
    assert compose(app, session)[0]  # the session still works


# ---- fine-tune ----------------------------------------------------------------------------------
def train(app, session, upload, task="lyrics", steps=4, base="default"):
    return list(app.train(session, str(upload), task, "tiny", steps, base))


def test_finetune_then_generate_and_download(app, tmp_path):
    session, other = new_session(), new_session()
    events = train(app, session, ROOT / "data" / "lyrics.txt")
    assert any(e["history"] for e in events[:-1]) or events[-1]["history"]
    final = events[-1]
    run = Path(final["run"])
    assert (run / "museforge.json").is_file()
    assert {h["split"] for h in final["history"]} >= {"train"}
    assert final["samples"]
    names = zipfile.ZipFile(final["zip"]).namelist()
    assert f"{run.name}/museforge.json" in names and not any("/checkpoints/" in n for n in names)
    # the run is offered in this session's lyrics menu only, and it generates
    assert str(run) in [v for _, v in app.model_choices("lyrics", session)]
    assert str(run) not in [v for _, v in app.model_choices("lyrics", other)]
    assert list(app.write("lyrics", "rain", str(run), {}, sampling()))[-1][0] is not None


def test_finetune_from_a_zip(app, tmp_path):
    archive = tmp_path / "songs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(ROOT / "data" / "lyrics.txt", "../../escape/lyrics.txt")  # a hostile name is flattened
        z.writestr("__MACOSX/._lyrics.txt", "junk")
    assert Path(train(app, new_session(), archive, steps=2)[-1]["run"]).is_dir()


def test_finetune_melody_from_a_zip_of_midi(app, tmp_path):
    archive = tmp_path / "tunes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(4):
            z.write(write_midi(tmp_path / f"t{i}.mid", [60 + i + s for s in (0, 2, 4, 5, 7, 5, 4, 2) * 2]), f"t{i}.mid")
    session = new_session()
    run = train(app, session, archive, task="melody", steps=2)[-1]["run"]
    assert run in [v for _, v in app.model_choices("melody", session)]
    wav, png, mids, summary, prov = app.melody(session, run, "A minor", 90, "4/4", 2, "Flute", None, "",
                                               sampling(max_new_tokens=None))
    assert Path(mids[0]).is_file() and json.loads(prov)["checkpoint"] == run


@pytest.mark.parametrize("name, content, task, message", [
    ("model.exe", b"MZ", "lyrics", "not a training file"),
    ("songs.txt", b"a\n\nb\n\nc", "lyrics", "no usable text"),
    ("songs.txt", b"la la la la", "melody", "trains on MIDI files"),
    ("tune.mid", b"MThd", "lyrics", "trains on text files"),
    ("songs.zip", b"PK not a zip", "lyrics", "not a valid zip"),
])
def test_finetune_bad_uploads(app, tmp_path, name, content, task, message):
    upload = tmp_path / name
    upload.write_bytes(content)
    with pytest.raises(gr.Error, match=message):
        train(app, new_session(), upload, task)


def test_finetune_without_file(app):
    with pytest.raises(gr.Error, match="Upload a training file"):
        list(app.train(new_session(), None, "lyrics", "tiny", 4, "default"))


def test_finetune_stop(app):
    session = new_session()
    events = app.train(session, str(ROOT / "data" / "lyrics.txt"), "lyrics", "tiny", 500, "default")
    next(events)  # the first progress event: training is running
    session["stop"] = True  # what the Stop button does
    with pytest.raises(gr.Error, match="Training stopped"):
        list(events)
    assert session["runs"] == []


def test_build_app_options(tiny_model_dir):
    demo = build_app(model=str(tiny_model_dir), tabs=["poem"])
    assert [d["api_name"] for d in demo.config["dependencies"] if d["api_name"] == "poem"] == ["poem"]
    with pytest.raises(ValueError, match="unknown tab"):
        build_app(tabs=["opera"])


# ---- pictures ------------------------------------------------------------------------------------
@pytest.fixture
def picture(tmp_path):
    import numpy as np
    from PIL import Image

    path = tmp_path / "photo.png"  # textured noise: a photo-like picture (the shipped classifier looks at it)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("task", ["story", "poem", "lyrics"])
def test_text_from_a_picture_shows_what_was_seen(app, picture, task):
    seen = app.look(str(picture))
    shown = App.seen_markdown(seen)
    assert shown.startswith(f"**Seen:** {seen.description}") and "top labels: " in shown and "mood: " in shown
    steps = list(app.write(task, "", "default", {"image": seen}, sampling(max_new_tokens=8)))  # no prompt needed
    text, provenance = steps[-1]
    record = json.loads(provenance)
    assert record["seen"]["description"] == seen.description and record["options"]["image"] == str(picture)
    assert record["seen"]["labels"][0][0] == seen.labels[0][0]


def test_a_picture_keeps_the_lyric_controls(app, picture):
    options = {"image": app.look(str(picture)), "sections": "intro", "rhyme": "AAAA", "syllables": "4-8"}
    text, provenance = write(app, "lyrics", "rain", options)[-1]
    assert "[Intro]" in text and json.loads(provenance)["seen"]
    text, provenance = write(app, "lyrics", "rain", {"image": app.look(str(picture))}, num=2)[-1]
    assert all(r["metadata"]["seen"]["description"] for r in json.loads(provenance))


def test_no_picture_shows_nothing_and_bad_pictures_are_one_line(app, tmp_path):
    assert app.look(None) is None and App.seen_markdown(None) == ""
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(gr.Error, match="is not an image museforge can read") as e:
        app.look(str(tmp_path / "notes.png"))
    assert "\n" not in e.value.message
    with pytest.raises(gr.Error, match="is not an uploaded file"):
        app.look("/etc/hostname")
