"""The one generation path on a tiny model: seeds, controls, streaming, provenance."""

import time

import pytest
import torch
from tinymodels import tiny_llama, tiny_model, tiny_tokenizer

import museforge.generation as generation
from museforge.generation import Generator


@pytest.fixture(scope="module")
def gen():
    tok = tiny_tokenizer()
    return Generator("lyrics", tiny_model(tok), tok)


def test_same_seed_same_output_different_seed_differs(gen):
    a = gen.generate("rain", seed=3, max_new_tokens=30)
    b = gen.generate("rain", seed=3, max_new_tokens=30)
    c = gen.generate("rain", seed=4, max_new_tokens=30)
    assert a.text == b.text and a.text != c.text


def test_seed_does_not_touch_global_rng(gen):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    gen.generate("rain", seed=1, max_new_tokens=5)
    assert torch.equal(torch.rand(3), expected)


def test_controls_are_honoured(gen):
    tok = gen.tokenizer
    outs = gen.generate("night", num_return_sequences=3, max_new_tokens=12, seed=1)
    assert len(outs) == 3 and len({o.text for o in outs}) > 1
    lengths = [len(r) for r in gen.complete_ids(tok("night")["input_ids"], gen.settings(max_new_tokens=12, seed=1)[0], n=4)]
    assert max(lengths) <= 12
    greedy = [gen.generate("night", temperature=0, max_new_tokens=15, seed=s).text for s in (1, 2)]
    assert greedy[0] == greedy[1]  # greedy ignores the seed
    # no_repeat_ngram_size forbids any repeated bigram in the generated ids
    ids = gen.complete_ids(tok("night")["input_ids"], gen.settings(no_repeat_ngram_size=2, temperature=0,
                                                                    repetition_penalty=1.0, max_new_tokens=40)[0])[0]
    full = tok("night")["input_ids"] + ids
    bigrams = list(zip(full, full[1:], strict=False))
    assert len(bigrams) == len(set(bigrams))


def test_stream_equals_generate_for_the_same_seed(gen):
    chunks = list(gen.stream("harbour", seed=5, max_new_tokens=25))
    assert len(chunks) > 1
    assert "".join(chunks).strip() == gen.generate("harbour", seed=5, max_new_tokens=25).text


def test_provenance(gen):
    out = gen.generate("rain", seed=9, max_new_tokens=4, temperature=0.7)
    p = out.provenance
    assert p["seed"] == 9 and p["task"] == "lyrics" and p["settings"]["temperature"] == 0.7
    assert p["settings"]["max_new_tokens"] == 4 and "time" in p and p["museforge"]
    assert out.to_dict()["provenance"] == p
    drawn = gen.generate("rain", max_new_tokens=4)
    assert isinstance(drawn.provenance["seed"], int)  # a drawn seed is recorded, so it can be replayed
    assert gen.generate("rain", max_new_tokens=4, seed=drawn.provenance["seed"]).text == drawn.text


@pytest.mark.parametrize("kwargs,needle", [
    ({"max_new_tokens": 0}, "max_new_tokens must be between"),
    ({"temperature": -1}, "temperature must be >= 0"),
    ({"top_p": 1.5}, "top_p must be in"),
    ({"num_return_sequences": 100}, "num_return_sequences must be between"),
    ({"key": "C"}, "unknown argument 'key' for lyrics"),
])
def test_bad_settings_are_explained(gen, kwargs, needle):
    with pytest.raises((ValueError, TypeError), match=needle):
        gen.generate("x", **kwargs)


def test_prompt_format_is_shared_by_training_and_generation():
    from museforge.tasks import get_task

    task = get_task("poem")
    for tok in (tiny_tokenizer(), tiny_tokenizer(chat=True)):
        prompt = task.render(tok, "the sea")
        doc = task.render(tok, "the sea", text="Waves on waves")
        assert doc.startswith(prompt.rstrip("\n").rsplit("\n", 1)[0])  # same instruction header
        assert "Waves on waves" in doc and "Write a poem about the sea." in prompt
    chat = tiny_tokenizer(chat=True)
    assert task.render(chat, "the sea").endswith("<|im_start|>assistant\n")
    assert get_task("lyrics").render(tiny_tokenizer(), "x", style="rap") == "### Write song lyrics about x, in the style: rap.\n"


def test_story_length_sets_budget(gen):
    from museforge.tasks import get_task

    story = Generator(get_task("story"), gen.model, gen.tokenizer)
    out = story.generate("a fox", length="short", seed=1, temperature=0, repetition_penalty=1.0)
    assert out.provenance["settings"]["max_new_tokens"] == 250
    with pytest.raises(ValueError, match="unknown story length 'epic'"):
        story.generate("a fox", length="epic")


def test_stream_returns_the_output_and_stops_when_closed(gen):
    it = gen.stream("harbour", seed=5, max_new_tokens=25)
    chunks = []
    try:
        while True:
            chunks.append(next(it))
    except StopIteration as done:
        out = done.value
    assert out.text == "".join(chunks).strip() and out.provenance["seed"] == 5
    early = gen.stream("harbour", seed=5, max_new_tokens=400, temperature=1.5, repetition_penalty=1.0)
    next(early)
    early.close()  # the generation thread ends at its next token instead of running to 400
    assert gen._lock.acquire(timeout=5)
    gen._lock.release()


def test_sample_lines_are_single_lines_with_fluency(gen):
    lines = gen.sample_lines("### Write song lyrics about rain.\n", 4, seed=1)
    assert len(lines) == 4 and all("\n" not in line for line in lines)
    assert all(line.logprob <= 0 for line in lines)
    assert [str(x) for x in gen.sample_lines("### Write song lyrics about rain.\n", 4, seed=1)] == [str(x) for x in lines]
    assert all(line.end_logprob <= 0 for line in lines) and any(line.end_logprob < line.logprob for line in lines)


@pytest.mark.parametrize("arch", ["gpt2", "llama-lean"])
def test_line_candidates_compute_their_shared_prompt_once(arch):
    """Candidates drawn from one prefix share it: it is computed once, at batch 1, and its cache
    repeated for the n rows, instead of n times; the rows then go on as a batch of n prompts
    would (the same greedy tokens, log-probabilities to rounding)."""
    from museforge.generation import _speed_up

    tok = tiny_tokenizer()
    model = tiny_model(tok).eval() if arch == "gpt2" else tiny_llama(tok).eval().to(torch.bfloat16)
    if arch == "llama-lean":
        assert _speed_up(model, "", True) == "onednn-packed-bf16+lean-llama"
    gen = Generator("lyrics", model, tok)
    shapes, covered = [], []
    model.register_forward_pre_hook(lambda m, args, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    if arch == "llama-lean":  # every call, the first step on the repeated cache included, takes the lean path
        lean = model.forward.lean
        covers = lean.covers
        lean.covers = lambda args, kw: (covered.append(covers(args, kw)), covered[-1])[1]
    ids = tok("### Write song lyrics about rain on a city night.\n")["input_ids"]
    settings = gen.settings(max_new_tokens=6, temperature=0.0, seed=0)[0]
    runs = {}
    for shared in (False, True):
        shapes.clear()
        scores = []
        rows = gen.complete_ids(ids, settings, n=3, logprobs=scores, shared_prefix=shared)
        runs[shared] = rows, scores, list(shapes)
    assert runs[False][2][0] == (3, len(ids))  # the prompt, three times over
    assert runs[True][2][0] == (1, len(ids) - 1) and all(t == 1 for _, t in runs[True][2][1:])
    assert runs[True][0] == runs[False][0]
    assert torch.allclose(torch.tensor(runs[True][1]), torch.tensor(runs[False][1]), atol=0.02)
    assert arch != "llama-lean" or (covered and all(covered))
    shapes.clear()
    gen.sample_lines("### Write song lyrics about rain.\n", 4, seed=1, max_new_tokens=5)
    assert shapes[0][0] == 1 and all(t == 1 for _, t in shapes[1:])  # composition shares its prompts


def test_a_prompt_is_shared_only_where_generate_would_build_a_plain_cache(gen):
    ids = [5, 6, 7]
    assert gen.shared_prefix_applies(ids, 2, {})
    assert not gen.shared_prefix_applies(ids, 1, {}) and not gen.shared_prefix_applies(ids[:1], 4, {})
    for asked in ({"cache_implementation": "static"}, {"prompt_lookup_num_tokens": 3}, {"synced_gpus": True},
                  {"assistant_model": object()}, {"cache": object()}, {"past_key_values": object()},
                  {"use_cache": False}, {"num_beams": 2}, {"num_return_sequences": 2}):
        assert not gen.shared_prefix_applies(ids, 4, asked), asked
    gen.model.generation_config.num_beams = 3  # the model's own generation config counts too
    try:
        assert not gen.shared_prefix_applies(ids, 4, {})
    finally:
        gen.model.generation_config.num_beams = 1


@pytest.mark.parametrize("text,word", [("I walk in the moonlight tonight.\nmore", " tonight"),
                                       ("we sing, again\n", " again"), ("a lover's", " lover's"), ("alone", "alone")])
def test_the_end_word_log_probability_sums_the_tokens_of_the_last_word(text, word):
    """Line.end_logprob scores the rhyme word of a sampled line: the tokens of its last word, back
    to the one that starts it, before the newline and any trailing punctuation."""
    tok = tiny_tokenizer()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    logprobs = [-(2.0 ** i) for i in range(len(ids))]  # each token's own value: the sum names the tokens
    pieces = [tok.decode([t]) for t in ids]
    at = next(i for i in range(len(pieces)) if "".join(pieces[i:]).startswith(word))
    want = sum(logprobs[at:at + next(k for k in range(1, len(ids) + 1) if "".join(pieces[at:at + k]) == word)])
    assert Generator("lyrics", tiny_llama(tok), tok)._end_logprob(ids, logprobs) == want


class SentencePieceLike:
    """Decodes like a SentencePiece tokenizer: "▁" marks a word start, and a lone token decodes
    without its leading space (the case that defeats looking at each token's own text)."""

    pieces = ["▁I", "▁walk", "▁in", "▁the", "▁moon", "light", "▁to", "night", ".", "\n", "▁more"]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.pieces[i] for i in ids).replace("▁", " ").lstrip(" ")


def test_the_end_word_log_probability_on_a_sentencepiece_tokenizer():
    tok = tiny_tokenizer()
    gen = Generator("lyrics", tiny_llama(tok), tok)
    gen.tokenizer = SentencePieceLike()
    logprobs = [-(2.0 ** i) for i in range(11)]
    assert gen._end_logprob(list(range(11)), logprobs) == logprobs[6] + logprobs[7]  # "▁to" "night"
    assert gen._end_logprob([], []) == gen._end_logprob([9], [-1.0]) == -30.0  # no word: the worst ending


def test_constrained_song_on_any_causal_lm(gen):
    out = gen.generate("rain", sections="verse chorus verse chorus", rhyme="AABB", syllables="4-12", seed=3)
    tags = [line for line in out.text.splitlines() if line.startswith("[")]
    assert tags == ["[Verse 1]", "[Chorus]", "[Verse 2]", "[Chorus]"]
    chorus = out.text.split("[Chorus]\n")
    assert chorus[1].split("\n\n")[0] == chorus[2].strip()  # a repeated chorus repeats verbatim
    meta = out.metadata
    assert meta["form"] == "song" and len(meta["lines"]) == 12  # the second chorus is copied, not rewritten
    # every unmet constraint is reported, never silently dropped
    unmet_lines = {f["line"] for f in meta["failures"]}
    assert unmet_lines == {rec["line"] for rec in meta["lines"] if set(rec["unmet"]) - {"few_rhymes", "forced_end"}}
    assert meta["constraints_met"] is (not meta["failures"])
    again = gen.generate("rain", sections="verse chorus verse chorus", rhyme="AABB", syllables="4-12", seed=3)
    assert again.text == out.text


def test_poem_forms(gen):
    from museforge.generation import Generator

    poem = Generator("poem", gen.model, gen.tokenizer)
    haiku = poem.generate("the sea", form="haiku", seed=1)
    assert len(haiku.text.splitlines()) == 3 and haiku.metadata["form"] == "haiku"
    with pytest.raises(ValueError):
        poem.generate("the sea", form="epic")


def test_public_api_functions_survive_submodule_imports():
    """museforge.generate / museforge.train stay functions after their modules are imported."""
    import museforge
    import museforge.generation  # noqa: F401
    import museforge.training  # noqa: F401

    assert callable(museforge.generate) and callable(museforge.train) and callable(museforge.generate_melody)
    assert museforge.generate.__module__ == "museforge" and museforge.train.__module__ == "museforge"


def test_int8_weights_stay_close_to_bf16(tmp_path):
    import torch

    from museforge.kernels import Int8Linear, quantize_int8

    tok = tiny_tokenizer()
    model = tiny_llama(tok).eval()
    ids = torch.tensor([tok("rain on a city night")["input_ids"]])
    with torch.no_grad():
        ref = model.to(torch.bfloat16)(ids).logits.float()
        q = quantize_int8(model)
        got = q(ids).logits.float()
    assert isinstance(q.lm_head, Int8Linear) and isinstance(q.model.layers[0].mlp.down_proj, Int8Linear)
    assert torch.nn.functional.cosine_similarity(ref.flatten(), got.flatten(), dim=0) > 0.99
    out = Generator("lyrics", q, tok).generate("rain", seed=1, max_new_tokens=8)
    assert out.provenance["dtype"] == "torch.bfloat16"


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_packed_bf16_weights_give_identical_outputs(arch, tmp_path):
    """The default CPU path (oneDNN-packed bf16 weights) must not change a single logit or token."""
    import copy

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from museforge.kernels import PackedLinear, pack_linears

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=160,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    else:
        model = tiny_model(tok)  # GPT-2: Conv1D layers, with biases
    model = model.eval().to(torch.bfloat16)
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN")
    packed = copy.deepcopy(model)
    assert pack_linears(packed)
    assert not any(isinstance(m, torch.nn.Linear) for m in packed.modules())
    assert sum(isinstance(m, PackedLinear) for m in packed.modules()) >= 6
    ids = torch.tensor([tok("rain on a city night and the lights")["input_ids"]] * 3)
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, packed(ids).logits)
    plain_out = Generator("lyrics", model, tok).generate("rain", seed=3, max_new_tokens=24)
    packed_out = Generator("lyrics", packed, tok).generate("rain", seed=3, max_new_tokens=24)
    assert plain_out.text == packed_out.text
    greedy = dict(seed=0, max_new_tokens=24, temperature=0.0)
    assert Generator("lyrics", model, tok).generate("rain", **greedy).text == \
        Generator("lyrics", packed, tok).generate("rain", **greedy).text


def test_packing_leaves_fp32_models_alone():
    import torch

    from museforge.kernels import pack_linears

    model = tiny_model(tiny_tokenizer())
    assert not pack_linears(model)
    assert any(isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D" for m in model.modules())


def test_generating_does_not_import_the_training_data_stack():
    """`datasets` (with pandas, ~0.5 s) loads where documents are read, not on the way to a first token."""
    import subprocess
    import sys

    code = ("import sys, museforge, museforge.generation, museforge.tasks, museforge.cli; "
            "print(sorted(m for m in ('datasets', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_gpu_decodes_with_a_static_cache_where_asked_and_transformers_can_compile_it(monkeypatch):
    """With gen.static_cache (opt-in) on CUDA, generate gets cache_implementation="static"
    (transformers then compiles the step); not on a CPU, not where the call or the model chose a
    cache, not with beams, assisted decoding or ZeRO-3, not for a quantization it cannot compile."""
    tok = tiny_tokenizer()
    gen = Generator("lyrics", tiny_llama(tok).eval(), tok)
    assert not gen.static_cache  # off unless asked for
    gen.static_cache = True
    seen, sizes = [], []
    real_generate = gen.model.generate

    def spy(*args, **kwargs):
        seen.append(kwargs.get("cache_implementation"))
        sizes.append(kwargs.get("max_cache_len"))
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(gen.model, "generate", spy)
    settings = gen.settings(seed=1, max_new_tokens=12, temperature=0.0, repetition_penalty=1.0)[0]
    dynamic = gen.complete("rain on the roof", settings)
    assert seen == [None] and not gen.static_cache_for({})  # a CPU: no compiling there
    monkeypatch.setattr(Generator, "device", property(lambda self: torch.device("cuda")))
    monkeypatch.setattr(generation, "_has_triton", lambda: False)
    assert not gen.static_cache_for({})  # torch.compile could not build kernels
    monkeypatch.setattr(generation, "_has_triton", lambda: True)
    assert gen.static_cache_for({})
    assert not gen.static_cache_for({"cache_implementation": "dynamic"})
    assert not gen.static_cache_for({"prompt_lookup_num_tokens": 3})
    assert not gen.static_cache_for({"num_beams": 2}) and not gen.static_cache_for({"synced_gpus": True})
    monkeypatch.setattr(gen.model, "hf_quantizer", type("Q", (), {"is_compileable": False})(), raising=False)
    assert not gen.static_cache_for({})
    monkeypatch.setattr(gen.model, "hf_quantizer", None)
    gen.static_cache = False
    assert not gen.static_cache_for({})  # the switch
    gen.static_cache = True
    gen.model.generation_config.cache_implementation = "offloaded"
    assert not gen.static_cache_for({})
    gen.model.generation_config.cache_implementation = None
    monkeypatch.setattr(gen.model, "_can_compile_fullgraph", False)
    assert not gen.static_cache_for({})
    monkeypatch.setattr(gen.model, "_can_compile_fullgraph", True)
    # the keywords it adds run (here on the CPU, uncompiled) and give the same greedy tokens
    monkeypatch.setattr(Generator, "device", property(lambda self: next(self.model.parameters()).device))
    monkeypatch.setattr(Generator, "static_cache_for", lambda self, hf: True)
    assert gen.complete("rain on the roof", settings) == dynamic and seen[-1] == "static"
    assert sizes[-1] == (256 if generation._sizes_static_cache() else None)
    # sized in powers of two (one compile per size), at most the context window
    assert [generation.cache_bucket(n, 8192) for n in (10, 256, 257, 700, 9000)] == [256, 256, 512, 1024, 8192]


def test_generators_in_other_threads_wait_their_turn_so_seeds_keep_their_text():
    """transformers' sampling draws from torch's global generator: two generations at once (the
    app's lyrics and poem tabs, which share one model) would take each other's numbers. They run
    one at a time."""
    import threading

    tok = tiny_tokenizer()
    model = tiny_llama(tok).eval()
    lyrics, poem = Generator("lyrics", model, tok), Generator("poem", model, tok)
    lyrics.exact_sampler = poem.exact_sampler = False  # transformers' own draw, from the global generator
    settings = lyrics.settings(seed=4, max_new_tokens=12, temperature=1.0, repetition_penalty=1.0)[0]
    alone = lyrics.complete("rain on the roof", settings)
    inside, release, order = threading.Event(), threading.Event(), []
    real_generate = model.generate

    def slow_generate(*args, **kwargs):
        order.append(threading.current_thread().name)
        inside.set()
        release.wait(5)
        return real_generate(*args, **kwargs)

    model.generate = slow_generate
    try:
        results = {}
        first = threading.Thread(target=lambda: results.setdefault("a", lyrics.complete("rain on the roof", settings)), name="a")
        second = threading.Thread(target=lambda: results.setdefault("b", poem.complete("the sea", settings)), name="b")
        first.start()
        assert inside.wait(5)
        second.start()
        second.join(0.5)
        assert order == ["a"] and second.is_alive()  # the poem waits while the song is generated
        release.set()
        first.join(5), second.join(5)
    finally:
        model.generate = real_generate
    assert order == ["a", "b"] and results["a"] == alone


def test_closing_a_streamed_song_stops_composing_it(gen, monkeypatch):
    """The app's Stop (or a closed tab) closes the stream: the song is not written on for nobody,
    holding the model, line after line."""
    calls = []
    real = gen.sample_lines
    monkeypatch.setattr(gen, "sample_lines", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    options = dict(sections="verse chorus verse chorus", rhyme="AABB", syllables="4-12", seed=3)
    whole = len(gen.generate("rain", **options).metadata["lines"])
    calls.clear()
    it = gen.stream("rain", **options)
    next(it)  # the first line
    it.close()
    for _ in range(50):  # the worker finishes the line it is on, then stops
        before = len(calls)
        time.sleep(0.1)
        if len(calls) == before and gen._lock.acquire(timeout=5):
            gen._lock.release()
            break
    assert len(calls) < whole / 2, (len(calls), whole)
