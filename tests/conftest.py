"""Shared fixtures; the tiny model builders live in tinymodels.py."""

from __future__ import annotations

import os

import pytest

# Tiny models gain nothing from threads, and on a busy 2-core machine spinning OpenMP threads
# make them 5x slower: one thread per test process. Set, not defaulted: tests compare weights
# trained in this process with weights trained in subprocesses (1 thread) bit for bit, and the
# thread count changes the order of sums (OMP_NUM_THREADS=2 pytest failed them).
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from tinymodels import tiny_model, tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A tiny model saved as a plain HF directory (to pass as --model PATH)."""
    path = tmp_path_factory.mktemp("tiny-model")
    tiny_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
