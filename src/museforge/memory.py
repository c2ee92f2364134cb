"""glibc's malloc and torch's big CPU tensors: two settings, measured here.

    from museforge.memory import keep_freed_memory, settle_malloc
    with keep_freed_memory():   # the training loop on a CPU, around the whole run
        ...
    settle_malloc()             # before each generation on a CPU (sets them once per process)

**Freed memory kept for the next step.** glibc's malloc serves every block over 32 MB (a full
fine-tune's embedding and head gradients, the head's bf16 copy: 56-113 MB each) with a fresh
`mmap` and gives it back to the system when it is freed, so the next step's first write to each
4 KB page faults again: 37,000-120,000 page faults a step at full 8 x 128. `keep_freed_memory`
sets glibc's `M_MMAP_MAX` to 0 (every block from the heap) and raises `M_TRIM_THRESHOLD` (freed
memory stays in the process) for a run on the main thread; no faults after the first steps.
Afterwards it trims and sets the thresholds where glibc's own adjustment settles after big
blocks (mmap 32 MB, trim 64 MB): setting any of them by hand turns that adjustment off for good,
and glibc's starting values would leave every later block of 128 KB-32 MB mapped afresh. The heap
may grow before freed blocks are reused (torch's 64-byte-aligned requests do not fit a freed
block of the same size until neighbours coalesce: up to 8 extra blocks in a loop that frees and
refills one 64 MB tensor); in training the peak grew little (full 8 x 128: 4.51-4.60 GB with
it, 4.50-4.54 GB without). Elsewhere than glibc it does nothing.

**Settled thresholds for generation.** glibc starts with a 128 KB mmap threshold and raises it,
with the trim threshold (twice it), as mapped blocks are freed. Decoding allocates and frees
tensors of a few MB every token (at batch 8: logits, scores and probabilities of 8 x 49,152
floats, 1.5 MB each), and where the process's history left the thresholds low, the top of the
heap is trimmed and faulted back every token: 3,400-3,600 page faults a step at batch 8 sampled
in one process, ~350 in another, 0 in a third (`/tmp/exp/gfaults.py`, `/tmp/exp/gsettle.py`,
one-off). `settle_malloc` sets the two thresholds to where glibc's adjustment ends up after big
blocks (32 and 64 MB, as `keep_freed_memory` leaves them): 0 faults a step, 43-45 ms a step
against 46-50 ms in processes that faulted. Process-wide and once, from any thread (under a lock,
so a run starting in the main thread keeps its own settings); a process started with malloc
settings of the user's own (`GLIBC_TUNABLES=glibc.malloc...`, `MALLOC_..._` variables) is left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import platform
import threading
from collections.abc import Iterator
from typing import Any

# glibc's mallopt parameters (malloc.h), and where its own adjustment of the first two ends up
# after big blocks are freed (setting any of them by hand turns that adjustment off for good)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_SETTLED_TRIM, _SETTLED_MMAP, _GLIBC_MMAP_MAX = 64 << 20, 32 << 20, 65536
_depth = 0  # nested runs: only the outermost one sets and restores
_settled = False  # the settled thresholds are set (by settle_malloc or at the end of a run)
_lock = threading.Lock()  # generations in other threads check and set while a run starts or ends


@functools.cache
def _glibc() -> Any:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    libc.mallopt.argtypes, libc.malloc_trim.argtypes = [ctypes.c_int, ctypes.c_int], [ctypes.c_size_t]
    return libc


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """Inside, memory freed by one training step is kept for the next instead of being returned
    to the system and faulted back in page by page; yields whether it applies: glibc only, and
    the main thread only (a thread's own malloc arena cannot hold blocks over 64 MB, so there it
    would change other threads' allocations and save nothing)."""
    global _depth
    libc = _glibc()
    if libc is None or threading.current_thread() is not threading.main_thread():
        yield False
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
                _settle(libc)
                libc.malloc_trim(0)


def _settle(libc: Any) -> None:
    global _settled
    libc.mallopt(_M_MMAP_THRESHOLD, _SETTLED_MMAP)
    libc.mallopt(_M_TRIM_THRESHOLD, _SETTLED_TRIM)
    _settled = True


def _tuned_by_user() -> bool:
    """Whether the process was started with malloc settings of the user's own."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return "glibc.malloc." in tunables or any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ)


def settle_malloc() -> bool:
    """Set glibc's mmap and trim thresholds where its own adjustment settles (see above), once per
    process, so the few-MB tensors of each decoding step are reused instead of faulted in afresh;
    returns whether it applies here (glibc, not tuned by the user). Left alone: a process whose
    malloc the user tuned (`GLIBC_TUNABLES=glibc.malloc...`, `MALLOC_..._` variables), a running
    `keep_freed_memory` (its own settings stand, and it settles them on exit), and anything but glibc."""
    libc = _glibc()
    if libc is None or _tuned_by_user():
        return False
    with _lock:
        if _depth == 0 and not _settled:
            _settle(libc)
    return True
