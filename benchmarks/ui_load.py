"""The app under load: N concurrent browser-less sessions (gradio_client) for a few minutes.

    OMP_NUM_THREADS=1 python benchmarks/ui_load.py                      # 16 sessions, 180 s
    OMP_NUM_THREADS=1 python benchmarks/ui_load.py --sessions 4 --duration 20

The server runs in its own process (so its memory is measured alone) on 127.0.0.1, built by
`museforge.ui.build_app` with the queue as ui.py configures it (the "generate" concurrency group:
`concurrency` requests at a time, 64 queued at most). Models: the tests' tiny GPT-2 for the text
tabs (the default SmolLM2-135M on a 2-core CPU would make 16 sessions a test of patience, not of
the app; --text-model default runs it anyway) and the shipped melody model (3.4M parameters).

Each session loops until the deadline over lyrics, poem, melody, story and melody "regenerate"
(which reads the session's own state), with its own prompts, seeds, keys and tempos, and checks
that every answer is its own (the provenance echoes the request). The server's handlers are
wrapped (in the server process, by this script) to count generations in flight: the most ever at
once must not exceed the queue's limit. The server's RSS is sampled every 0.5 s (psutil). At the
end a fresh session must still get answers. Results: benchmarks/results/ui_load.json + a table.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import save_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEYS = [
    "C major",
    "D minor",
    "E minor",
    "F major",
    "G major",
    "A minor",
    "Bb major",
    "B minor",
    "D major",
    "G minor",
    "A major",
    "C minor",
    "Eb major",
    "F# minor",
    "E major",
    "F minor",
]


# ---- the server process ---------------------------------------------------------------------


def serve(port: int, text_model: str, runs_dir: str, stats_file: str) -> None:
    """The app on 127.0.0.1:`port`; writes its in-flight counts to `stats_file` twice a second."""
    from museforge.ui import build_app

    demo = build_app(model=text_model, melody_model="default", runs_dir=runs_dir)
    app = demo.museforge
    lock, stats = threading.Lock(), {"in_flight": 0, "max_in_flight": 0, "calls": 0}

    def enter() -> None:
        with lock:
            stats["in_flight"] += 1
            stats["calls"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])

    def leave() -> None:
        with lock:
            stats["in_flight"] -= 1

    def counted(method):
        if inspect.isgeneratorfunction(method):

            @functools.wraps(method)
            def gen(*args, **kwargs):
                enter()
                try:
                    yield from method(*args, **kwargs)
                finally:
                    leave()

            return gen

        @functools.wraps(method)
        def call(*args, **kwargs):
            enter()
            try:
                return method(*args, **kwargs)
            finally:
                leave()

        return call

    # the page's handlers look these up per call; regenerate (melody_again) calls melody once
    for name in ("write", "melody"):
        setattr(app, name, counted(getattr(app, name)))
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    # the limit of the "generate" concurrency group, as ui.py configures the queue
    stats["concurrency_limit"] = demo._queue.default_concurrency_limit
    while True:
        with lock:
            Path(stats_file).write_text(json.dumps(stats))
        time.sleep(0.5)


# ---- the clients ------------------------------------------------------------------------------


@functools.cache
def parameters(client, api_name: str) -> set[str]:
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"][api_name]
    return {p["parameter_name"] for p in api["parameters"]}


def text_request(client, i: int, j: int, task: str) -> str | None:
    prompt, seed = f"session {i} request {j}", 100_000 * i + j
    extra = {
        "lyrics": dict(style="", sections="", syllables="", max_new_tokens=24),
        "poem": dict(max_new_tokens=24),
        "story": dict(length="short", style=""),
    }[task]
    if "image" in parameters(client, f"/{task}"):  # the text tabs may take a picture: none here
        extra["image"] = None
    result = client.predict(
        prompt=prompt, random_seed=False, seed=seed, api_name=f"/{task}", **extra
    )
    record = next(
        json.loads(x) for x in result if isinstance(x, str) and x.lstrip().startswith("{")
    )
    text = next(x for x in result if isinstance(x, str) and not x.lstrip().startswith("{"))
    if (record.get("prompt"), record.get("seed"), record.get("task")) != (prompt, seed, task):
        return f"session {i} {task}: asked {prompt!r} seed {seed}, got {record.get('prompt')!r} seed {record.get('seed')}"
    if not isinstance(text, str):
        return f"session {i} {task}: no text"
    return None


def melody_request(client, i: int, j: int, again: bool) -> str | None:
    key, tempo = KEYS[i % len(KEYS)], 60 + 5 * (i % 32)  # tempo: 60-215 bpm (the page allows 240)
    if again:  # repeats this session's last settings: state that must not cross sessions
        result = client.predict(api_name="/melody_regenerate")
    else:
        result = client.predict(
            key=key,
            tempo=tempo,
            bars=2,
            primer=None,
            random_seed=False,
            seed=1000 * i + j,
            api_name="/melody",
        )
    wav, png, mids, summary, provenance = result
    options = json.loads(provenance)["options"]
    if (options["key"], options["tempo"]) != (key, tempo):
        return f"session {i} {'regenerate' if again else 'melody'}: asked {key} {tempo}, got {options['key']} {options['tempo']}"
    if not wav or not mids or not png:
        return f"session {i} melody: missing files"
    return None


KINDS = ("lyrics", "poem", "melody", "story", "melody_regenerate")


def session(url: str, i: int, deadline: float, downloads: Path, seed: int) -> dict[str, Any]:
    from gradio_client import Client

    rng = random.Random(seed * 1000 + i)
    client = Client(url, verbose=False, download_files=str(downloads))
    done: list[dict[str, Any]] = []
    j, melody_done = 0, False
    while time.time() < deadline:
        kind = KINDS[(i + j) % len(KINDS)]
        if kind == "melody_regenerate" and not melody_done:
            kind = "melody"
        t = time.perf_counter()
        try:
            if kind in ("melody", "melody_regenerate"):
                problem = melody_request(client, i, j, again=kind == "melody_regenerate")
                melody_done = True
            else:
                problem = text_request(client, i, j, kind)
            error = None
        except Exception as e:  # noqa: BLE001 - counted and reported
            problem, error = None, f"session {i} {kind}: {type(e).__name__}: {str(e)[:200]}"
        done.append(
            {"kind": kind, "seconds": time.perf_counter() - t, "mismatch": problem, "error": error}
        )
        j += 1
        time.sleep(rng.uniform(0, 0.5))  # a person's pause between clicks
    return {"session": i, "requests": done}


def sample_rss(
    pid: int, samples: list[tuple[float, int]], stop: threading.Event, t0: float
) -> None:
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            samples.append((round(time.time() - t0, 2), proc.memory_info().rss))
        except psutil.Error:
            return
        stop.wait(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    ap.add_argument(
        "--text-model",
        default="tiny",
        help="tiny (the tests' 2-layer GPT-2) or a model for the text tabs",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ui_load.json")
    args = ap.parse_args()

    import psutil
    from gradio_client import Client

    sys.path.insert(0, str(ROOT / "tests"))
    from ui_support import free_port

    work = Path(tempfile.mkdtemp(prefix="museforge-ui-load-"))
    text_model = args.text_model
    if text_model == "tiny":
        from tinymodels import tiny_model, tiny_tokenizer

        tok = tiny_tokenizer()
        tiny_model(tok).save_pretrained(work / "tiny-text")
        tok.save_pretrained(work / "tiny-text")
        text_model = str(work / "tiny-text")
    port = free_port()
    stats_file = work / "stats.json"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_TEMP_DIR": str(work / "gradio"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            str(port),
            text_model,
            str(work / "runs"),
            str(stats_file),
        ],
        env=env,
        stdout=(work / "server.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(server.pid, samples, stop, t0), daemon=True)
    sampler.start()
    try:
        while not stats_file.exists():
            assert server.poll() is None, (work / "server.log").read_text()[-3000:]
            time.sleep(0.2)
        rss_idle = psutil.Process(server.pid).memory_info().rss
        # warm-up: load both models once (the app loads lazily), so the load phase measures serving
        warm = Client(url, verbose=False, download_files=str(work / "warm"))
        assert (
            text_request(warm, 999, 0, "lyrics") is None
            and melody_request(warm, 999, 1, False) is None
        )
        rss_warm = psutil.Process(server.pid).memory_info().rss
        load_start = time.time() - t0
        deadline = time.time() + args.duration
        with ThreadPoolExecutor(args.sessions) as pool:
            results = list(
                pool.map(
                    lambda i: session(url, i, deadline, work / f"session{i}", args.seed),
                    range(args.sessions),
                )
            )
        load_end = time.time() - t0
        time.sleep(2)
        rss_end = psutil.Process(server.pid).memory_info().rss
        # afterwards: a fresh session still gets answers
        after = Client(url, verbose=False, download_files=str(work / "after"))
        after_t = time.perf_counter()
        after_ok = (
            text_request(after, 998, 0, "poem") is None
            and melody_request(after, 998, 1, False) is None
        )
        after_s = time.perf_counter() - after_t
        stats = json.loads(stats_file.read_text())
    finally:
        stop.set()
        sampler.join()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    temp_mb = sum(f.stat().st_size for f in (work / "gradio").rglob("*") if f.is_file()) / 1e6
    shutil.rmtree(work, ignore_errors=True)

    requests = [r for s in results for r in s["requests"]]
    load = [rss for t, rss in samples if load_start <= t <= load_end]
    half = [rss for t, rss in samples if load_start <= t <= (load_start + load_end) / 2]
    by_kind = {}
    for kind in KINDS:
        secs = sorted(r["seconds"] for r in requests if r["kind"] == kind)
        if secs:
            by_kind[kind] = {
                "requests": len(secs),
                "p50_s": round(statistics.median(secs), 2),
                "p95_s": round(secs[int(0.95 * (len(secs) - 1))], 2),
                "max_s": round(secs[-1], 2),
            }
    mb = lambda b: round(b / 2**20, 1)  # noqa: E731
    result = {
        "sessions": args.sessions,
        "duration_s": round(load_end - load_start, 1),
        "text_model": args.text_model,
        "melody_model": "shipped (default)",
        "omp_threads": env["OMP_NUM_THREADS"],
        "cpus": os.cpu_count(),
        "requests": len(requests),
        "requests_per_s": round(len(requests) / (load_end - load_start), 2),
        "errors": sum(r["error"] is not None for r in requests),
        "mismatches": sum(r["mismatch"] is not None for r in requests),
        "problems": [r["error"] or r["mismatch"] for r in requests if r["error"] or r["mismatch"]][
            :20
        ],
        "by_kind": by_kind,
        "requests_per_session": [len(s["requests"]) for s in results],
        "queue_concurrency_limit": stats["concurrency_limit"],
        "max_generations_in_flight": stats["max_in_flight"],
        "handler_calls": stats["calls"],
        "rss_mb": {
            "idle": mb(rss_idle),
            "warm": mb(rss_warm),
            "peak": mb(max(load)),
            "end": mb(rss_end),
            "peak_first_half": mb(max(half)),
            "samples": len(samples),
            # the load phase, one sample per 10 s: a plateau is bounded, a steady climb a leak
            "every_10s": [mb(rss) for t, rss in samples if load_start <= t <= load_end][::20],
        },
        "gradio_temp_files_mb": round(temp_mb, 1),
        "answers_afterwards": after_ok,
        "afterwards_s": round(after_s, 2),
    }
    save_json(result, args.out, show=False)
    r = result
    print(
        "| sessions | seconds | requests | req/s | errors | mismatches | max in flight | RSS warm | RSS peak | RSS end | answers after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {r['sessions']} | {r['duration_s']} | {r['requests']} | {r['requests_per_s']} | {r['errors']} | "
        f"{r['mismatches']} | {r['max_generations_in_flight']} | {r['rss_mb']['warm']} MB | {r['rss_mb']['peak']} MB | "
        f"{r['rss_mb']['end']} MB | {r['answers_afterwards']} |"
    )
    for kind, k in by_kind.items():
        print(
            f"  {kind:<18} {k['requests']:>5} requests  p50 {k['p50_s']:>6} s  p95 {k['p95_s']:>6} s  max {k['max_s']:>6} s"
        )
    print(f"-> {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        main()
