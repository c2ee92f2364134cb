"""Song structures, rhyme schemes, meters and poem forms, and the text format that holds them.

    PYTHONPATH=src python -c "from museforge.text import song_form; print(song_form('V C V C B C'))"

One spec type serves songs and poems: a `FormSpec` is a list of `SectionSpec`s (a verse, a
chorus, a stanza), each with its line count, rhyme scheme and per-line syllable targets. The
composer and the metrics walk the same structure whether the text is a sonnet or a rap song.
Lyrics are written with display tags ("[Verse 1]", "[Chorus]") and blank lines between
sections; `render_song` and `parse_song` convert between that text and (tag, lines) pairs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from museforge.errors import UserError

__all__ = [
    "FORMS",
    "REPEATING_SECTIONS",
    "SECTION_NAMES",
    "FormSpec",
    "Section",
    "SectionSpec",
    "SyllableTargets",
    "expand_rhyme",
    "parse_rhyme",
    "parse_sections",
    "parse_song",
    "parse_syllables",
    "poem_form",
    "render_song",
    "section_name",
    "song_form",
    "syllable_target",
]

SECTION_NAMES = ("intro", "verse", "pre-chorus", "chorus", "bridge", "hook", "outro")
"""Song section names, as `parse_sections` returns them."""

REPEATING_SECTIONS = frozenset({"chorus", "pre-chorus", "hook"})
"""Sections sung the same each time they come back (generated once, never numbered)."""

_ABBREVIATIONS = {"i": "intro", "v": "verse", "p": "pre-chorus", "c": "chorus", "b": "bridge",
                  "h": "hook", "o": "outro"}  # fmt: skip
_ALIASES = {"prechorus": "pre-chorus", "pre": "pre-chorus", "refrain": "chorus",
            "middle-8": "bridge", "middle8": "bridge", "coda": "outro"}  # fmt: skip
_DEFAULT_LINES = {"intro": 2, "verse": 4, "pre-chorus": 2, "chorus": 4, "bridge": 4, "hook": 2,
                  "outro": 2, "stanza": 4}  # fmt: skip

SyllableTargets = tuple[tuple[int, int], ...]
"""Per-line syllable ranges (low, high), cycling over the lines; (8, 8) means exactly 8."""


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class Section:
    """One section of a song structure, with its display number (None: shown unnumbered)."""

    name: str
    """Normalised name: one of `SECTION_NAMES` (or "stanza" for poems)."""
    number: int | None = None

    @property
    def tag(self) -> str:
        """Display tag without brackets: "Verse 1", "Chorus", "Pre-Chorus" ("" for stanzas)."""
        if self.name == "stanza":
            return ""
        title = "-".join(part.capitalize() for part in self.name.split("-"))
        return title if self.number is None else f"{title} {self.number}"


def _valid_names() -> str:
    short = {name: letter.upper() for letter, name in _ABBREVIATIONS.items()}
    return ", ".join(f"{name} ({short[name]})" for name in SECTION_NAMES)


def section_name(label: str) -> str:
    """Normalise one section label: "V", "verse", "Verse 2", "[Pre-Chorus]" -> a `SECTION_NAMES`
    entry. Raises ValueError naming the valid labels."""
    clean = re.sub(r"\s+\d+$", "", label.strip().strip("[]():").strip()).lower()
    clean = re.sub(r"[\s_]+", "-", clean)
    name = _ABBREVIATIONS.get(clean) or _ALIASES.get(clean) or clean
    if name not in SECTION_NAMES:
        raise UserError(f"unknown section {label!r}; valid sections: {_valid_names()}")
    return name


def parse_sections(structure: str | Sequence[str]) -> list[Section]:
    """Parse a song structure into numbered sections.

    Accepts "V C V C B C", "verse, chorus, verse", "VCVCBC" or a list of labels, in any case.
    Verses are always numbered ([Verse 1], [Verse 2]); choruses, pre-choruses and hooks repeat
    and are never numbered; intro, bridge and outro are numbered only when they occur twice.
    """
    if isinstance(structure, str):
        labels = [t for t in re.split(r"[\s,;|/+>]+", structure.strip()) if t]
        labels = _join_pre(labels)
        if (
            len(labels) == 1
            and len(labels[0]) > 1
            and set(labels[0].lower()) <= set(_ABBREVIATIONS)
        ):
            labels = list(labels[0])  # "VCVCBC"
    else:
        labels = list(structure)
    if not labels:
        raise UserError(
            f"empty song structure; list sections such as 'V C V C B C' ({_valid_names()})"
        )
    names = [section_name(str(label)) for label in labels]
    sections, seen = [], {name: 0 for name in names}
    for name in names:
        seen[name] += 1
        numbered = name == "verse" or (name not in REPEATING_SECTIONS and names.count(name) > 1)
        sections.append(Section(name, seen[name] if numbered else None))
    return sections


def _join_pre(labels: list[str]) -> list[str]:
    """Rejoin "pre chorus" that whitespace splitting tore apart."""
    out: list[str] = []
    for label in labels:
        if out and out[-1].lower() == "pre" and label.lower() == "chorus":
            out[-1] = "pre-chorus"
        else:
            out.append(label)
    return out


# --------------------------------------------------------------------------- rhyme schemes

_RHYME_ALIASES = {"couplets": "AABB", "couplet": "AABB", "monorhyme": "AAAA", "alternate": "ABAB",
                  "cross": "ABAB", "enclosed": "ABBA", "ballad": "ABCB"}  # fmt: skip


def parse_rhyme(scheme: str | None) -> str | None:
    """Validate a rhyme scheme: "AABB", "abab cdcd" -> "AABB", "ABABCDCD"; None for no rhyme.

    Lines sharing a letter rhyme; a letter used once is unconstrained. Spaces (stanza marks)
    are dropped. "free", "none", "" and None mean no constraint; "couplets" is AABB,
    "monorhyme" AAAA, "alternate" ABAB, "enclosed" ABBA, "ballad" ABCB.
    """
    if scheme is None:
        return None
    if not isinstance(scheme, str):
        raise UserError(f"rhyme scheme must be letters like 'AABB', got {scheme!r}")
    text = scheme.strip().lower()
    if text in ("", "free", "none"):
        return None
    text = _RHYME_ALIASES.get(text, text)
    letters = re.sub(r"\s+", "", text).upper()
    if not re.fullmatch(r"[A-Z]+", letters):
        bad = sorted(set(re.sub(r"[A-Z]", "", letters)))
        raise UserError(
            f"rhyme scheme {scheme!r} has {''.join(bad)!r}; use letters A-Z (lines with the same "
            f"letter rhyme, e.g. 'AABB'), or one of: free, {', '.join(_RHYME_ALIASES)}"
        )
    return letters


def expand_rhyme(scheme: str | None, lines: int) -> str | None:
    """The scheme letter of each of `lines` lines.

    A short scheme repeats with fresh letters each round, so "AABB" over 8 lines is
    "AABBCCDD" (new rhymes per quatrain); a one-letter scheme keeps its letter ("AAAA"
    over 6 lines is "AAAAAA", monorhyme). Letters only name rhyme groups.
    """
    scheme = parse_rhyme(scheme)
    if scheme is None or lines <= 0:
        return None if scheme is None else ""
    if len(set(scheme)) == 1:
        return scheme[0] * lines
    low = min(scheme)
    span = ord(max(scheme)) - ord(low) + 1
    out = []
    for i in range(lines):
        cycle, pos = divmod(i, len(scheme))
        # Each round shifts the letters past the ones used so far; past Z, lowercase.
        index = (ord(scheme[pos]) - ord("A") + cycle * span) % 52
        out.append(chr(ord("A") + index) if index < 26 else chr(ord("a") + index - 26))
    return "".join(out)


# --------------------------------------------------------------------------- syllables


def parse_syllables(
    spec: int | str | Sequence[int] | Sequence[Sequence[int]] | None,
) -> SyllableTargets | None:
    """Parse a syllable target into per-line (low, high) ranges that cycle over lines.

    8 or "8" -> exactly 8; "8-10" or the tuple (8, 10) -> a range; "8/6/8/6" or the list
    [8, 6, 8, 6] -> a meter template, line by line; "8-9/8-9/5-6" mixes both. None or "free"
    means no target.
    """
    if spec is None:
        return None
    if isinstance(spec, bool):
        raise UserError(f"syllable target must be a number, range or template, got {spec!r}")
    if isinstance(spec, int):
        return (_range(spec, spec, spec),)
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("", "free", "none"):
            return None
        parts = [p for p in re.split(r"[/,\s]+", text) if p]
        out = []
        for part in parts:
            match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
            if not match:
                raise UserError(
                    f"syllable target {spec!r}: cannot read {part!r}; write 8, '8-10' or a "
                    "template like '8/6/8/6'"
                )
            low = int(match.group(1))
            out.append(_range(low, int(match.group(2) or low), spec))
        return tuple(out)
    items = list(spec)
    if isinstance(spec, tuple) and len(items) == 2 and all(isinstance(x, int) for x in items):
        return (_range(items[0], items[1], spec),)
    out = []
    for item in items:
        parsed = parse_syllables(item)
        if parsed is None or len(parsed) != 1:
            raise UserError(f"syllable template {spec!r}: each line needs one number or range")
        out.append(parsed[0])
    if not out:
        raise UserError("syllable template is empty; give a number, a range or e.g. '8/6/8/6'")
    return tuple(out)


def _range(low: int, high: int, spec: object) -> tuple[int, int]:
    if not 1 <= low <= high <= 64:
        raise UserError(f"syllable target {spec!r}: need 1 <= low <= high <= 64, got {low}-{high}")
    return (low, high)


def syllable_target(targets: SyllableTargets | None, line: int) -> tuple[int, int] | None:
    """The (low, high) syllable range for line `line` (0-based) of a section."""
    return None if not targets else targets[line % len(targets)]


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class SectionSpec:
    """What one section (verse, chorus, poem stanza) should look like."""

    section: Section
    """Name and display number."""
    lines: int
    """Number of lines."""
    rhyme: str | None = None
    """Scheme letter per line (already expanded to `lines` letters), or None for no rhyme.
    Letters are local to the section."""
    syllables: SyllableTargets | None = None
    """Per-line syllable ranges, cycling; None for no target."""

    @property
    def name(self) -> str:
        return self.section.name

    @property
    def tag(self) -> str:
        return self.section.tag

    @property
    def repeats(self) -> bool:
        """True for sections sung identically each time (chorus, pre-chorus, hook)."""
        return self.name in REPEATING_SECTIONS


@dataclass(frozen=True)
class FormSpec:
    """A whole form: a song's sections or a poem's stanzas, in order."""

    name: str
    """"song", "sonnet", "haiku", ..."""
    sections: tuple[SectionSpec, ...]
    description: str = ""

    @property
    def lines(self) -> int:
        """Total number of lines, repeated choruses included."""
        return sum(s.lines for s in self.sections)

    @property
    def rhyme(self) -> str | None:
        """The scheme of the whole form, stanzas separated by spaces ("ABAB CDCD EFEF GG")."""
        parts = [s.rhyme for s in self.sections if s.rhyme]
        return " ".join(parts) if parts else None

    @property
    def structure(self) -> list[str]:
        """Section names in order (for section adherence)."""
        return [s.name for s in self.sections]


def _section_spec(
    section: Section, lines: int, rhyme: str | None, syllables: object
) -> SectionSpec:
    if not isinstance(lines, int) or isinstance(lines, bool) or not 1 <= lines <= 200:
        raise UserError(f"{section.name}: lines must be an integer from 1 to 200, got {lines!r}")
    return SectionSpec(section, lines, expand_rhyme(rhyme, lines), parse_syllables(syllables))  # type: ignore[arg-type]


def _per_section(value: object, name: str, default: object) -> object:
    if isinstance(value, Mapping):
        unknown = set(value) - set(SECTION_NAMES) - {"stanza"}
        if unknown:
            raise UserError(
                f"unknown section keys {sorted(unknown)}; valid: {', '.join(SECTION_NAMES)}"
            )
        return value.get(name, default)
    return default if value is None else value


def song_form(
    structure: str | Sequence[str] = "V C V C B C",
    lines: int | Mapping[str, int] | None = None,
    rhyme: str | Mapping[str, str | None] | None = "AABB",
    syllables: object = None,
) -> FormSpec:
    """A song spec from a structure string, with per-section lines, rhyme and syllables.

    Each of `lines`, `rhyme` and `syllables` is either one value for every section or a
    mapping from section name to value ({"verse": 8, "chorus": 4}). Default lines: verse 4,
    chorus 4, bridge 4, pre-chorus 2, intro/outro/hook 2. Default rhyme AABB, no syllable target.
    """
    specs = []
    for section in parse_sections(structure):
        n = _per_section(lines, section.name, _DEFAULT_LINES[section.name])
        scheme = _per_section(rhyme, section.name, None if isinstance(rhyme, Mapping) else rhyme)
        syl = _per_section(syllables, section.name, None)
        specs.append(_section_spec(section, n, scheme, syl))  # type: ignore[arg-type]
    return FormSpec("song", tuple(specs))


def _stanzas(schemes: Sequence[str | None], syllables: object) -> tuple[SectionSpec, ...]:
    return tuple(
        _section_spec(Section("stanza"), len(s) if s else 4, s, syllables) for s in schemes
    )


FORMS = ("sonnet", "haiku", "limerick", "ballad", "free")
"""Poem forms `poem_form` knows."""


def poem_form(name: str, stanzas: int | None = None) -> FormSpec:
    """The spec of a named poem form.

    - sonnet: Shakespearean, 14 lines of about 10 syllables, ABAB CDCD EFEF GG.
    - haiku: 3 lines of 5/7/5 syllables, unrhymed.
    - limerick: 5 lines AABBA, 8-9/8-9/5-6/5-6/8-9 syllables.
    - ballad: quatrains in common measure (8/6/8/6) rhyming ABCB; `stanzas` of them (default 4).
    - free: unrhymed, unmetered quatrains; `stanzas` of them (default 3).
    """
    key = name.strip().lower()
    if key == "sonnet":
        spec = _stanzas(("ABAB", "CDCD", "EFEF", "GG"), "9-11")
        return FormSpec("sonnet", spec, "Shakespearean sonnet: ABAB CDCD EFEF GG, ~10 syllables")
    if key == "haiku":
        return FormSpec(
            "haiku", (_section_spec(Section("stanza"), 3, None, "5/7/5"),), "5/7/5 syllables"
        )
    if key == "limerick":
        stanza = _section_spec(Section("stanza"), 5, "AABBA", "8-9/8-9/5-6/5-6/8-9")
        return FormSpec("limerick", (stanza,), "AABBA, long-long-short-short-long")
    if key in ("ballad", "free"):
        count = stanzas if stanzas is not None else (4 if key == "ballad" else 3)
        if not isinstance(count, int) or not 1 <= count <= 50:
            raise UserError(f"stanzas must be an integer from 1 to 50, got {stanzas!r}")
        if key == "ballad":
            return FormSpec("ballad", _stanzas(["ABCB"] * count, "8/6/8/6"), "common measure, ABCB")
        return FormSpec("free", _stanzas([None] * count, None), "free verse")
    raise UserError(f"unknown poem form {name!r}; choose one of: {', '.join(FORMS)}")


# --------------------------------------------------------------------------- text format

_TAG_LINE = re.compile(r"^\s*\[([^\[\]]+)\]\s*$")


def render_song(sections: Sequence[tuple[str | Section, Sequence[str]]]) -> str:
    """Write sections as text: a "[Tag]" line, the lines, and a blank line between sections.

    A tag may be given with or without brackets, or as a `Section`; an empty tag writes the
    lines alone (a poem stanza). Inverse of `parse_song`.
    """
    blocks = []
    for tag, lines in sections:
        label = tag.tag if isinstance(tag, Section) else tag.strip().strip("[]").strip()
        body = [line.strip() for line in lines if line.strip()]
        blocks.append("\n".join(([f"[{label}]"] if label else []) + body))
    return "\n\n".join(blocks)


def parse_song(text: str) -> list[tuple[str, list[str]]]:
    """Split text into (tag, lines) sections at "[Tag]" lines.

    Tags are returned without brackets as written ("Verse 1"). Untagged text is one section
    with tag ""; when it holds blank-line-separated stanzas, each stanza is its own ""
    section (so poems round-trip). Blank lines inside a tagged section are dropped.
    """
    sections: list[tuple[str, list[str]]] = []
    tag: str | None = None
    current: list[str] = []

    def close() -> None:
        if tag is not None or current:
            sections.append((tag or "", list(current)))

    for raw in text.splitlines():
        line = raw.strip()
        match = _TAG_LINE.match(raw)
        if match:
            close()
            tag, current = match.group(1).strip(), []
        elif not line:
            if tag is None and current:  # stanza break in untagged text
                close()
                current = []
        else:
            current.append(line)
    close()
    return sections
