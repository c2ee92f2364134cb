"""glibc malloc settings: freed memory kept during training, settled thresholds for generation."""

import json
import subprocess
import sys

import pytest
import torch
from test_train import run
from tinymodels import tiny_model, tiny_tokenizer

import museforge.memory as memory
from museforge.generation import Generator
from museforge.memory import keep_freed_memory

_FILLS = """
import json, resource, torch
from museforge.memory import keep_freed_memory

def fills(n):  # minor page faults of each of n fills of a fresh 64 MB tensor, freed after each
    faults = []
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(16 << 20).fill_(1.0)  # 64 MB: over glibc's largest mmap threshold (32 MB)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20

plain, before = fills(3), rss()
with keep_freed_memory() as applied:
    kept = fills(20)  # the heap grows by a few blocks at first (glibc's aligned allocations), then reuses them
    with keep_freed_memory():  # a nested run must not end the outer one's setting
        pass
    kept += fills(4)
    inside = rss()
print(json.dumps({"applied": applied, "plain": plain, "kept": kept, "before": before, "inside": inside, "after": rss()}))
"""


def _huge_pages_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(memory._glibc() is None, reason="glibc's malloc only")
@pytest.mark.skipif(_huge_pages_always(), reason="big blocks map in 2 MB pages here: few faults to save")
def test_keep_freed_memory_reuses_big_blocks_without_page_faults_and_gives_them_back_after():
    """In a fresh process (this one's heap depends on the tests before): each 64 MB fill faults
    on all its 16,384 pages outside, none inside once the heap has grown; memory goes back after."""
    out = subprocess.run([sys.executable, "-c", _FILLS], capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert r["applied"] and min(r["plain"]) > 8000
    assert sum(r["kept"][-6:]) < 1000, r["kept"]
    grown = r["inside"] - r["before"]
    assert r["after"] < r["before"] + max(64, 0.5 * grown)  # trimmed on the way out


def test_keep_freed_memory_leaves_other_threads_alone():
    import threading

    seen = []

    def worker():
        with keep_freed_memory() as applied:
            seen.append(applied)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [False]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the loop does not use it")
def test_training_keeps_freed_memory_for_the_run_only(tmp_path, monkeypatch):
    import contextlib

    events = []

    @contextlib.contextmanager
    def recording():
        events.append("in")
        yield True
        events.append("out")

    seen = []
    monkeypatch.setattr("museforge.training.keep_freed_memory", recording)
    run(tmp_path, "keep", "model.lora=false", "train.max_steps=2", callback=lambda e: seen.append(list(events)))
    assert seen and all(s == ["in"] for s in seen)  # every progress event came from inside
    assert events == ["in", "out"]


_BLOCKS = """
import ctypes, json, sys, torch
from museforge.memory import settle_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "settle":
    settle_malloc()
mapped = libc.mallinfo2().hblkhd
blocks = [torch.empty(7 << 20).fill_(1.0) for _ in range(2)]  # two 28 MB tensors
mapped = libc.mallinfo2().hblkhd - mapped
del blocks
print(json.dumps({"mapped": mapped / 2**20, "kept": libc.mallinfo2().fordblks / 2**20}))
"""


def _has_mallinfo2() -> bool:
    return memory._glibc() is not None and hasattr(memory._glibc(), "mallinfo2")


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc 2.33+ only")
def test_settled_thresholds_serve_blocks_up_to_32_mb_from_the_heap_and_keep_them_when_freed():
    def blocks(mode):
        out = subprocess.run([sys.executable, "-c", _BLOCKS, mode], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    fresh, settled = blocks("glibc"), blocks("settle")
    assert fresh["mapped"] >= 56 and fresh["kept"] < 28  # a fresh process maps them and gives them back
    assert settled["mapped"] == 0 and settled["kept"] >= 56  # settled: from the heap, kept for the next step


def test_generating_on_a_cpu_settles_the_thresholds(monkeypatch):
    tok = tiny_tokenizer()
    gen = Generator("lyrics", tiny_model(tok), tok)
    calls = []
    monkeypatch.setattr(memory, "settle_malloc", lambda: calls.append(1) or True)
    gen.generate("rain", seed=1, max_new_tokens=3)
    assert calls


def test_malloc_tuned_by_the_user_is_left_alone(monkeypatch):
    if memory._glibc() is None:
        assert not memory.settle_malloc()
        return
    for name, value in (("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000"), ("MALLOC_TRIM_THRESHOLD_", "1000000")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            calls = []
            m.setattr(memory, "_settle", lambda libc, calls=calls: calls.append(1))
            m.setattr(memory, "_settled", False)
            assert not memory.settle_malloc() and not calls
    monkeypatch.setattr(memory, "_settled", False)
    calls = []
    monkeypatch.setattr(memory, "_settle", lambda libc: calls.append(1))
    assert memory.settle_malloc() and calls == [1]


@pytest.mark.skipif(memory._glibc() is None, reason="glibc's malloc only")
def test_a_sample_written_during_training_leaves_the_runs_setting(monkeypatch):
    """Training writes samples through the generator on the main thread, inside the run."""
    calls = []
    monkeypatch.setattr(memory, "_settle", lambda libc: calls.append(memory._depth))
    monkeypatch.setattr(memory, "_settled", False)
    with keep_freed_memory() as applied:
        assert applied and memory.settle_malloc() and calls == []
    assert calls == [0]  # the run's end settles them
