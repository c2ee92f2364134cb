"""Fuzzing the loaders of user files: random and mutated bytes either load or raise UserError.

The targets and the mutations are benchmarks/fuzz.py's (which runs 20,000 inputs per loader);
here hypothesis drives them: 200 inputs per fast loader, 40 through `datasets` (a few seconds).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fuzz  # noqa: E402

SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,
)


@pytest.fixture(scope="module")
def loaders(tmp_path_factory):
    import datasets

    folder = tmp_path_factory.mktemp("fuzz")
    old = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = folder / "hf-datasets"  # no fuzz inputs in the user's cache
    datasets.disable_progress_bars()
    yield folder, fuzz.targets(folder), {".mid": fuzz.valid_midi(), **fuzz.SEEDS}
    datasets.config.HF_DATASETS_CACHE = old
    datasets.enable_progress_bars()


def inputs(suffixes):
    """(suffix, bytes): random bytes, or a valid file of that kind mutated by a seeded mutator."""
    suffix = st.sampled_from(suffixes)
    raw = st.tuples(suffix, st.binary(max_size=800))
    mutated = st.tuples(suffix, st.integers(0, 2**32)).map(lambda t: (t[0], t[1], "mutate"))
    return st.one_of(raw, mutated)


def check(loaders, name, example):
    folder, targets, seeds = loaders
    suffixes, fn = targets[name]
    suffix, data = example[0], example[1]
    if len(example) == 3:  # a mutation of the valid seed file, reproducible from the integer
        data = fuzz.mutate(seeds[suffix], random.Random(data))
    assert fuzz.run_one(fn, folder / f"input{suffix}", data) in ("ok", "user-error")


@settings(max_examples=200, **SETTINGS)
@given(example=inputs((".mid",)))
def test_midi_loader(loaders, example):
    check(loaders, "midi", example)


@settings(max_examples=200, **SETTINGS)
@given(example=inputs((".mid",)))
def test_primer_loader(loaders, example):
    check(loaders, "primer", example)


@settings(max_examples=200, **SETTINGS)
@given(example=inputs((".txt", ".jsonl", ".csv")))
def test_text_checks(loaders, example):
    check(loaders, "text-check", example)


@settings(max_examples=40, **SETTINGS)
@given(example=inputs((".txt", ".jsonl", ".csv")))
def test_text_loader_end_to_end(loaders, example):
    check(loaders, "text-load", example)


def test_the_seeds_load(loaders):
    """The mutations start from files that load: a fuzzer of broken seeds would test nothing."""
    folder, targets, seeds = loaders
    for name in ("midi", "primer", "text-load"):
        suffixes, fn = targets[name]
        for suffix in suffixes:
            assert fuzz.run_one(fn, folder / f"seed{suffix}", seeds[suffix]) == "ok", (name, suffix)


def test_a_crash_is_reported(loaders):
    """run_one lets anything but UserError escape: the fuzzer can fail."""
    folder = loaders[0]

    def broken(path):
        raise IndexError("a bug")

    with pytest.raises(IndexError):
        fuzz.run_one(broken, folder / "x.txt", b"x")
