"""Several users at once: 8 gradio_client sessions, each generating several times, in parallel.

Each client asks for its own prompts, seeds, keys and tempos, and checks that every answer is
its own (the provenance echoes the request), including "regenerate", which reads per-session state.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import ui_support

CLIENTS = 8
KEYS = ["C major", "D minor", "E minor", "F major", "G major", "A minor", "Bb major", "B minor"]


@pytest.fixture(scope="module")
def url(tiny_model_dir, tmp_path_factory):
    demo, url = ui_support.launch(tiny_model_dir, tmp_path_factory.mktemp("runs"))
    yield url
    demo.close()


def user(url: str, i: int, downloads) -> list[str]:
    """One user's session; returns the problems it saw (empty = all good)."""
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=str(downloads))
    problems = []
    for j, task in enumerate(("lyrics", "poem", "story", "lyrics")):
        prompt, seed = f"user {i} request {j}", 1000 * i + j
        extra = {"lyrics": dict(style="", sections="", syllables="", max_new_tokens=16),
                 "poem": dict(max_new_tokens=16), "story": dict(length="short", style="")}[task]
        if task == "story" and i % 2:  # stories are long (250 tokens): half the users write one
            continue
        text, provenance, _seen = client.predict(prompt=prompt, random_seed=False, seed=seed, api_name=f"/{task}", **extra)
        record = json.loads(provenance)
        if (record["prompt"], record["seed"], record["task"]) != (prompt, seed, task):
            problems.append(f"user {i} {task}: got {record['prompt']!r} seed {record['seed']}")
    key, tempo = KEYS[i], 60 + 10 * i
    for api in ("/melody", "/melody_regenerate"):  # regenerate repeats this session's last settings
        args = dict(key=key, tempo=tempo, bars=2, primer=None, random_seed=False, seed=i) if api == "/melody" else {}
        wav, png, mids, summary, provenance = client.predict(api_name=api, **args)
        options = json.loads(provenance)["options"]
        if (options["key"], options["tempo"]) != (key, tempo) or not wav or not mids:
            problems.append(f"user {i} {api}: got {options}")
    return problems


def test_eight_concurrent_users(url, tmp_path):
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda i: user(url, i, tmp_path / f"user{i}"), range(CLIENTS)))
    assert [p for ps in results for p in ps] == []
