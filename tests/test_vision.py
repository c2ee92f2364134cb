"""See and tell: reading any image, the shipped ImageNet classifier, grouping, mood, Hugging Face
vision models (tiny, in-process), and pictures in the generate path (API, CLI)."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tinymodels import SHARED, TINY_CAPTION, tiny_captioner, tiny_image_classifier, tiny_model
from typer.testing import CliRunner

from museforge.cli import app
from museforge.errors import UserError
from museforge.generation import Generator
from museforge.vision import (
    Classifier,
    ImageError,
    Seen,
    colour_name,
    identify,
    mood,
    mood_phrase,
    open_image,
)
from museforge.vision.efficientnet import EfficientNetLite0, SameConv
from museforge.vision.imagenet import CLASSES, GROUPS

PHOTOS = SHARED / "images"
needs_photos = pytest.mark.skipif(not PHOTOS.is_dir(), reason="needs ../shared/data/images")


def photo_like(size=(96, 64), seed=0) -> Image.Image:
    """Textured noise: many colours, like a photo (a flat picture would make museforge unsure)."""
    return Image.fromarray(
        np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    )


class FixedEye(Classifier):
    """A classifier that always answers the same probabilities (injected, like a loaded model)."""

    def __init__(self, probs: dict[str, float], groups: dict[str, list[str]] | None = None):
        labels = [*probs, *(f"other {i}" for i in range(20))]  # the rest of the mass, spread thin
        group_of = {labels.index(n): word for word, names in (groups or {}).items() for n in names}
        super().__init__("fixed", labels, group_of)
        self.p = np.array([*probs.values(), *[(1 - sum(probs.values())) / 20] * 20])

    def probabilities(self, img):
        return self.p


CATS = FixedEye(
    {"tabby cat": 0.3, "tiger cat": 0.3, "Persian cat": 0.3},
    {"cat": ["tabby cat", "tiger cat", "Persian cat"]},
)
UNSURE = FixedEye({"football helmet": 0.16, "bobsleigh": 0.11})


@pytest.fixture(scope="module")
def vision_dirs(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("vision")
    return {
        "classifier": tiny_image_classifier(root / "classifier"),
        "captioner": tiny_captioner(root / "captioner", tokenizer),
    }


@pytest.fixture(scope="module")
def gen(tokenizer):
    return Generator("lyrics", tiny_model(tokenizer), tokenizer)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    photo_like().save(path)
    return path


# ---- reading any image -----------------------------------------------------------------------------
def _png_with_size(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose header claims width x height (a decompression bomb's trick)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path


def _truncated(path: Path, fmt: str) -> Path:
    photo_like((200, 150)).save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda p: (p / "notes.txt").write_text("not a picture") and p / "notes.txt",
            "is not an image museforge can read",
        ),
        (lambda p: _truncated(p / "cut.jpg", "JPEG"), "is damaged or truncated"),
        (lambda p: _truncated(p / "cut.png", "PNG"), "is damaged or truncated"),
        (
            lambda p: _png_with_size(p / "big.png", 9000, 8000),
            "9000x8000 (72 megapixels), over the limit of 64",
        ),
        (
            lambda p: _png_with_size(p / "bomb.png", 40000, 40000),
            "claims more pixels than Pillow allows",
        ),
        (lambda p: p, "is not a file"),
    ],
)
def test_bad_images_are_one_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ImageError, match=re.escape(message)) as e:
        open_image(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_image_is_a_file_not_found_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist") as e:
        identify(tmp_path / "nope.jpg", vision_model=CATS)
    assert isinstance(e.value, FileNotFoundError)


def test_large_images_are_downscaled(tmp_path):
    photo_like((2500, 1500)).save(tmp_path / "large.jpg", quality=80)
    img, info = open_image(tmp_path / "large.jpg")
    assert max(img.size) == 1024 and img.mode == "RGB"
    assert info["size"] == [2500, 1500] and info["notes"] == ["downscaled from 2500x1500"]


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (40, 40), c) for c in ((220, 20, 20), (20, 20, 220), (20, 220, 20))]
    frames[0].save(
        tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100, loop=0
    )
    img, info = open_image(tmp_path / "a.gif")
    assert info["notes"] == ["first frame of 3"]
    assert mood(img)["colours"][0][0] == "red"


def test_cmyk_16_bit_and_transparent_images_are_converted(tmp_path):
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # red in ink
    img, info = open_image(tmp_path / "cmyk.jpg")
    assert (
        img.mode == "RGB"
        and mood(img)["colours"][0][0] == "red"
        and "CMYK converted to RGB" in info["notes"]
    )

    grey = Image.fromarray(np.full((40, 40), 32768, dtype=np.uint16))  # 16-bit mid grey
    grey.save(tmp_path / "16bit.png")
    img, info = open_image(tmp_path / "16bit.png")
    assert img.mode == "RGB" and 0.45 < mood(img)["brightness"] < 0.55  # not clipped to white
    assert "16-bit greyscale scaled to 8 bits" in info["notes"]

    clear = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # fully transparent black: shows as white
    clear.save(tmp_path / "alpha.png")
    img, info = open_image(tmp_path / "alpha.png")
    assert mood(img)["brightness"] > 0.99 and info["notes"] == ["transparent areas put on white"]
    clear.convert("P").save(tmp_path / "palette.gif", transparency=0)
    assert mood(open_image(tmp_path / "palette.gif")[0])["brightness"] > 0.99


# ---- the shipped classifier -------------------------------------------------------------------------
def test_same_padding_is_tensorflow_s():
    """224 -> 112 with a 3x3 stride-2 kernel: TF pads 0 left/top and 1 right/bottom."""
    conv = SameConv(1, 1, 3, 2, bias=False)
    x = torch.randn(1, 1, 224, 224)
    expected = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, [0, 1, 0, 1]), conv.weight, stride=2
    )
    assert conv(x).shape[-2:] == (112, 112) and torch.allclose(conv(x), expected)


def test_efficientnet_loads_the_shipped_weights_strictly():
    from museforge.vision import default_weights

    net = EfficientNetLite0()
    net.load_state_dict(torch.load(default_weights(), weights_only=True), strict=True)
    assert sum(p.numel() for p in net.parameters()) == 4_652_008


def test_imagenet_table():
    assert len(CLASSES) == 1000 and CLASSES[281] == "tabby cat" and CLASSES[967] == "espresso"
    members = [i for ids in GROUPS.values() for i in ids]
    assert len(members) == len(set(members)), "a class in two groups"
    assert all(151 <= i <= 268 for i in GROUPS["dog"]) and len(GROUPS["dog"]) == 118


@needs_photos
def test_the_cat_photo_says_cat_and_the_galaxy_says_not_sure():
    cat = identify(PHOTOS / "chelsea.png")
    assert cat.subjects[0][0] == "cat" and cat.confidence > 0.8 and not cat.not_sure
    assert {n for n, _ in cat.labels[:3]} == {"tabby cat", "tiger cat", "Egyptian Mau"}
    assert cat.describe().startswith("a cat, in ") and "warm" in cat.describe()
    for name in (
        "hubble_deep_field.jpg",
        "astronaut.png",
        "horse.png",
    ):  # ImageNet has no such class
        seen = identify(PHOTOS / name)
        assert seen.not_sure and seen.description.startswith("not sure")
        assert seen.describe().startswith("a scene in ")  # the prompt rests on no guess


def test_default_classifier_on_a_synthetic_image():
    seen = identify(photo_like(), top=3)
    assert len(seen.labels) == 3 and seen.model.startswith("efficientnet-lite0")
    assert all(0 <= p <= 1 for _, p in seen.labels) and seen.labels[0][1] >= seen.labels[1][1]
    assert sum(p for _, p in seen.subjects) <= 1 + 1e-6


# ---- grouping, "not sure", mood ------------------------------------------------------------------------
def test_sibling_classes_add_up_to_an_everyday_word():
    seen = identify(photo_like(), vision_model=CATS)
    assert seen.subjects[0] == ("cat", pytest.approx(0.9)) and not seen.not_sure
    assert seen.description == "a cat (90%)" and seen.labels[0] == ("tabby cat", pytest.approx(0.3))


def test_low_confidence_says_not_sure_and_names_no_subject():
    seen = identify(photo_like(), vision_model=UNSURE)
    assert seen.not_sure and seen.description == "not sure (best guess: a football helmet, 16%)"
    assert "helmet" not in seen.describe() and seen.describe().startswith("a scene in ")


def test_a_flat_drawing_is_not_sure_even_when_the_classifier_is():
    drawing = Image.new("RGB", (80, 80), "white")
    drawing.paste((0, 0, 0), (20, 20, 60, 70))  # a black silhouette on white
    seen = identify(drawing, vision_model=CATS)
    assert seen.mood["flat"] and seen.not_sure and "drawing or silhouette" in seen.description


@pytest.mark.parametrize(
    "rgb, name",
    [
        ((250, 250, 250), "white"),
        ((5, 5, 5), "black"),
        ((128, 128, 128), "grey"),
        ((200, 30, 30), "red"),
        ((110, 70, 30), "brown"),
        ((20, 30, 90), "navy"),
        ((40, 160, 60), "green"),
        ((230, 200, 60), "yellow"),
    ],
)
def test_colour_names(rgb, name):
    assert colour_name(*rgb) == name


def test_mood_of_warm_cold_dark_and_grey_pictures():
    warm = mood(Image.new("RGB", (32, 32), (200, 120, 40)))
    cold = mood(Image.new("RGB", (32, 32), (20, 40, 90)))
    grey = mood(Image.new("RGB", (32, 32), (120, 120, 120)))
    assert warm["words"] == ["soft", "warm"] and warm["colours"] == [("orange", 1.0)]
    assert cold["words"] == ["dark", "cold"] and cold["colours"][0][0] == "navy"
    assert grey["greyscale"] and mood_phrase(grey) == "soft black-and-white tones"
    assert mood_phrase(warm) == "soft, warm tones of orange"


# ---- Hugging Face vision models --------------------------------------------------------------------------
def test_a_hugging_face_classifier_from_a_local_dir(vision_dirs):
    seen = identify(photo_like(), vision_model=str(vision_dirs["classifier"]))
    assert seen.labels[0] == ("lighthouse", pytest.approx(0.965, abs=1e-3))
    assert seen.description == "a lighthouse (96%)" and seen.model == str(vision_dirs["classifier"])


def test_a_captioning_model_s_caption_is_the_description(vision_dirs):
    seen = identify(photo_like(), vision_model=str(vision_dirs["captioner"]))
    assert seen.caption == TINY_CAPTION and seen.description == TINY_CAPTION and seen.labels == []
    assert 0 < seen.confidence <= 1 and seen.describe().startswith(TINY_CAPTION + ", in ")


def test_a_model_that_cannot_see_is_refused(tiny_model_dir):
    from museforge.models import ModelNotFoundError

    with pytest.raises(
        ModelNotFoundError, match="neither an image-classification nor an image-to-text"
    ):
        identify(photo_like(), vision_model=str(tiny_model_dir))


# ---- pictures in the generate path ---------------------------------------------------------------------------
def test_the_picture_joins_the_prompt_and_the_metadata(gen, photo):
    topic, seen = gen.task.look("rain", {"image": str(photo), "vision_model": CATS})
    assert (
        topic == "rain, inspired by a photo of " + seen.describe()
        and seen.describe().startswith("a cat, in ")
    )
    out = gen.generate("rain", image=str(photo), vision_model=CATS, seed=2, max_new_tokens=6)
    assert out.prompt == "rain" and out.provenance["options"]["image"] == str(photo)
    meta = out.metadata["seen"]
    assert meta["description"] == "a cat (90%)" and meta["confidence"] == pytest.approx(0.9)
    assert meta["subjects"][0] == ["cat", 0.9] and meta["prompt"] == seen.describe()
    json.dumps(out.to_dict())  # metadata and provenance stay JSON


def test_a_picture_alone_is_enough_and_same_seed_same_text(gen, photo):
    a = gen.generate("", image=str(photo), vision_model=CATS, seed=3, max_new_tokens=8)
    b = gen.generate(image=str(photo), vision_model=CATS, seed=3, max_new_tokens=8)
    assert a.text == b.text and a.metadata["seen"]["description"] == "a cat (90%)"
    with pytest.raises(UserError, match="give a prompt"):
        gen.generate("", seed=3)


def test_lyric_controls_still_apply_with_a_picture(gen, photo):
    out = gen.generate(
        "rain",
        image=str(photo),
        vision_model=CATS,
        seed=2,
        sections="intro",
        rhyme="AAAA",
        syllables="4-8",
    )
    assert (
        out.text.startswith("[Intro]")
        and out.metadata["form"]
        and out.metadata["seen"]["description"]
    )


def test_streaming_with_a_picture_returns_what_was_seen(gen, photo):
    stream = gen.stream("", image=str(photo), vision_model=CATS, seed=2, max_new_tokens=8)
    chunks = []
    with pytest.raises(StopIteration) as done:
        while True:
            chunks.append(next(stream))
    out = done.value.value
    assert out.text == "".join(chunks).strip() and out.metadata["seen"]["subjects"][0][0] == "cat"


def test_a_captioner_s_caption_reaches_the_story(tokenizer, vision_dirs, photo):
    story = Generator("story", tiny_model(tokenizer), tokenizer)
    topic, _ = story.task.look(
        "", {"image": str(photo), "vision_model": str(vision_dirs["captioner"])}
    )
    assert TINY_CAPTION in story.task.render(tokenizer, topic)


def test_vision_model_without_an_image_is_an_error(gen):
    with pytest.raises(UserError, match="needs image="):
        gen.generate("rain", vision_model="default", seed=1, max_new_tokens=4)


# ---- CLI -----------------------------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_identify(vision_dirs, photo):
    r = runner.invoke(
        app,
        ["identify", str(photo), "--vision-model", str(vision_dirs["classifier"]), "--top", "2"],
    )
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "a lighthouse (96%)" and lines[1].split() == ["96.5%", "lighthouse"]
    assert lines[3].startswith("mood: ")
    r = runner.invoke(
        app, ["identify", str(photo), "--vision-model", str(vision_dirs["classifier"]), "--json"]
    )
    assert json.loads(r.stdout)["labels"][0][0] == "lighthouse"


def test_cli_generate_from_an_image(tiny_model_dir, vision_dirs, photo):
    r = runner.invoke(
        app,
        [
            "generate",
            "story",
            "--image",
            str(photo),
            "--vision-model",
            str(vision_dirs["captioner"]),
            "--model",
            str(tiny_model_dir),
            "--seed",
            "1",
            "--max-new-tokens",
            "6",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert f"seen in {photo}: {TINY_CAPTION}" in r.stderr
    assert json.loads(r.stdout)[0]["metadata"]["seen"]["caption"] == TINY_CAPTION


@pytest.mark.parametrize(
    "args, needle",
    [
        (["identify", "README.md"], "'README.md' is not an image museforge can read"),
        (["identify", "missing.png"], "image 'missing.png' does not exist"),
        (["generate", "story", "--image", "missing.png"], "image 'missing.png' does not exist"),
        (["generate", "melody", "--image", "x.png"], "--image works with lyrics, poem and story"),
        (
            ["generate", "poem", "the sea", "--vision-model", "default"],
            "--vision-model needs --image",
        ),
    ],
)
def test_cli_bad_images_exit_2_with_one_line(args, needle):
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and needle in r.stderr and r.stderr.count("\n") == 1, r.output


def test_seen_round_trips_to_json():
    seen = Seen(
        "x.png",
        "m",
        labels=[("a", 0.5)],
        subjects=[("a", 0.5)],
        confidence=0.5,
        mood=mood(photo_like()),
    )
    d = json.loads(json.dumps(seen.to_dict()))
    assert d["description"] == "an a (50%)" and d["prompt"].startswith("an a, in ")
