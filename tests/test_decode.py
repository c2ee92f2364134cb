"""The lean Llama decoding forward (museforge.decode): same logits and tokens as the model's own."""

import copy

import pytest
import tinymodels
import torch
from tinymodels import tiny_tokenizer

from museforge.generation import Generator, _speed_up

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def tiny_llama(tok, **extra):
    """The tiny Llama in bf16, for inference."""
    return tinymodels.tiny_llama(tok, **extra).eval().to(torch.bfloat16)


def lean_pair(tok):
    """(the plain bf16 model, a copy with packed weights and the lean forward)."""
    plain = tiny_llama(tok)
    lean = copy.deepcopy(plain)
    assert _speed_up(lean, "", True) == "onednn-packed-bf16+lean-llama"
    return plain, lean


def count_lean_calls(model):
    """Count the forward calls the lean path computes, and the tokens of each."""
    lean = model.forward.lean
    calls = []
    covers = lean.covers

    def counting(args, kw):
        ok = covers(args, kw)
        calls.append(kw["input_ids"].shape[1] if ok else 0)
        return ok

    lean.covers = counting
    return calls


def test_logits_identical_for_prompt_decode_and_chunks(tok):
    from transformers.cache_utils import DynamicCache

    plain, lean = lean_pair(tok)
    ids = torch.tensor([tok("rain on a city night and the lights go down slow")["input_ids"]] * 2)
    calls = count_lean_calls(lean)
    with torch.inference_mode():
        c1, c2 = DynamicCache(config=plain.config), DynamicCache(config=lean.config)
        a = plain(input_ids=ids[:, :5], cache=c1, use_cache=True).logits
        b = lean(input_ids=ids[:, :5], cache=c2, use_cache=True).logits
        assert torch.equal(a, b)
        one_by_one = [plain(input_ids=ids[:, i:i + 1], cache=c1, use_cache=True).logits for i in range(5, 9)]
        b1 = lean(input_ids=ids[:, 5:6], cache=c2, use_cache=True).logits  # one token
        chunk = lean(input_ids=ids[:, 6:9], cache=c2, use_cache=True).logits  # three at once
        assert torch.equal(one_by_one[0], b1)
        assert torch.equal(torch.cat(one_by_one[1:], 1), chunk)
        # the cache it leaves is a valid DynamicCache with the same content
        assert c2.get_seq_length() == c1.get_seq_length() == 9
        assert torch.equal(c1.layers[1].keys, c2.layers[1].keys) and torch.equal(c1.layers[0].values, c2.layers[0].values)
    assert calls == [5, 1, 3]


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_generation_identical_to_the_plain_model(tok, n, temperature):
    plain, lean = lean_pair(tok)
    calls = count_lean_calls(lean)
    settings = dict(seed=5, max_new_tokens=30, temperature=temperature, repetition_penalty=1.0, num_return_sequences=n)
    a = Generator("lyrics", plain, tok).complete("rain on the roof", Generator("lyrics", plain, tok).settings(**settings)[0])
    b = Generator("lyrics", lean, tok).complete("rain on the roof", Generator("lyrics", lean, tok).settings(**settings)[0])
    assert a == b
    assert calls and all(calls)  # every forward went through the lean path


def test_prompt_lookup_for_greedy(tok):
    """Greedy, batch 1, no processors: proposed tokens are checked in one forward, same tokens."""
    plain, lean = lean_pair(tok)
    gen, ref = Generator("lyrics", lean, tok), Generator("lyrics", plain, tok)
    prompt = "la la la la la la la la la la la la la la la la"
    greedy = dict(seed=0, max_new_tokens=60, temperature=0.0, repetition_penalty=1.0)
    assert gen.exact_lookup(gen.hf_kwargs(gen.settings(**greedy)[0]))  # on by default for lyrics and poems
    assert Generator("poem", lean, tok).lookup and not Generator("story", lean, tok).lookup  # stories rarely repeat
    calls = count_lean_calls(lean)
    assert gen.complete(prompt, gen.settings(**greedy)[0]) == ref.complete(prompt, ref.settings(**greedy)[0])
    assert any(c > 1 for c in calls[1:]), "no proposed tokens were checked"
    gen.lookup = False  # the switch
    assert not gen.exact_lookup(gen.hf_kwargs(gen.settings(**greedy)[0]))
    gen.lookup = True
    # a repetition penalty is applied differently to proposed tokens by transformers: no lookup then
    assert not gen.exact_lookup(gen.hf_kwargs(gen.settings(**{**greedy, "repetition_penalty": 1.2})[0]))
    assert not gen.exact_lookup(gen.hf_kwargs(gen.settings(**{**greedy, "temperature": 0.7})[0]))
    assert not Generator("lyrics", plain, tok).exact_lookup(gen.hf_kwargs(gen.settings(**greedy)[0]))


class CountDependent(torch.nn.Module):
    """A product whose rows come out differently when several are computed at once (as oneDNN's
    bf16 kernels do for some shapes)."""

    def __init__(self, layer):
        super().__init__()
        from museforge.kernels import PackedLinear

        self.inner = PackedLinear(layer)
        self.in_features = self.inner.in_features

    def forward(self, x):
        y = self.inner(x)
        return y if x.shape[-2] == 1 else y * 1.01


@pytest.mark.parametrize("by_row", [True, False])
def test_a_chunk_is_computed_as_if_each_token_came_alone_where_products_depend_on_the_row_count(tok, by_row):
    from transformers.cache_utils import DynamicCache

    from museforge.decode import LeanLlama

    model = tiny_llama(tok)
    lean = LeanLlama(model, CountDependent)
    assert all(lean.by_row.values()) and len(lean.by_row) == 5  # the probe finds them all
    if not by_row:  # what the chunk would give if it batched them: the check below must catch it
        lean.by_row = dict.fromkeys(lean.by_row, False)
    lean.install()
    ids = torch.tensor([tok("rain on a city night and the lights go down slow")["input_ids"]])
    with torch.inference_mode():
        c1, c2 = DynamicCache(config=model.config), DynamicCache(config=model.config)
        model(input_ids=ids[:, :5], cache=c1, use_cache=True), model(input_ids=ids[:, :5], cache=c2, use_cache=True)
        one_by_one = torch.cat([model(input_ids=ids[:, i:i + 1], cache=c1, use_cache=True).logits for i in range(5, 9)], 1)
        chunk = model(input_ids=ids[:, 5:9], cache=c2, use_cache=True).logits
    assert torch.equal(one_by_one, chunk) is by_row


def test_prompt_lookup_logits_equal_one_by_one_decoding_even_where_products_depend_on_the_row_count(tok):
    """transformers' prompt lookup sends the prompt with its first proposals in one call, then
    chunks: every logit must be the one plain decoding computes, also with a product that rounds
    several rows differently from one (as oneDNN's bf16 kernels do for some shapes)."""
    from museforge.decode import LeanLlama

    model = tiny_llama(tok)
    LeanLlama(model, CountDependent).install()
    calls = count_lean_calls(model)
    ids = torch.tensor([tok("la la la la la la la la la la la la")["input_ids"]])
    kw = dict(attention_mask=torch.ones_like(ids), max_new_tokens=24, min_new_tokens=24, do_sample=False,
              output_logits=True, return_dict_in_generate=True)
    with torch.inference_mode():
        looked_up = model.generate(ids, prompt_lookup_num_tokens=3, **kw)
        assert calls[0] > ids.shape[1], "the first call should carry proposals"
        assert any(c > 1 for c in calls[1:]), "no chunk of proposals was checked"
        plain = model.generate(ids, **kw)
    assert torch.equal(looked_up.sequences, plain.sequences)
    assert len(looked_up.logits) == len(plain.logits)
    assert all(torch.equal(a, b) for a, b in zip(looked_up.logits, plain.logits, strict=True))


def test_a_cache_marked_grouped_groups_query_heads_in_one_token_steps(tok, monkeypatch):
    """Only a cache that asks for it (shared-prompt line candidates) gets the grouped attention:
    each key/value head's query heads as the rows of one query, read against that head."""
    import torch.nn.functional as F
    from transformers.cache_utils import DynamicCache

    import museforge.decode as decode

    _, lean = lean_pair(tok)
    ids = torch.tensor([tok("rain on a city night and the lights go down slow")["input_ids"]] * 3)
    queries = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(decode.F, "scaled_dot_product_attention",
                        lambda q, *a, **k: (queries.append(tuple(q.shape)), sdpa(q, *a, **k))[1])
    logits = {}
    with torch.inference_mode():
        for grouped in (False, True):
            cache = DynamicCache(config=lean.config)
            setattr(cache, decode.GROUPED, grouped)
            lean(input_ids=ids[:, :5], cache=cache, use_cache=True)
            queries.clear()
            logits[grouped] = torch.cat([lean(input_ids=ids[:, i:i + 1], cache=cache, use_cache=True).logits
                                         for i in range(5, 9)], 1)
            h, kv = lean.config.num_attention_heads, lean.config.num_key_value_heads
            assert set(queries) == {(3, kv, h // kv, lean.config.head_dim) if grouped else (3, h, 1, lean.config.head_dim)}
    # the same arithmetic per query row: equal here (a wrong grouping moves them by ~0.008)
    assert torch.equal(logits[True], logits[False])


def test_calls_it_does_not_cover_go_to_the_models_own_forward(tok):
    plain, lean = lean_pair(tok)
    calls = count_lean_calls(lean)
    ids = torch.tensor([tok("rain on a city night")["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(plain(ids).logits, lean(ids).logits)  # positional, no cache
        padded = torch.cat([torch.full((1, 2), tok.pad_token_id or 0), ids], 1)
        mask = torch.cat([torch.zeros(1, 2, dtype=torch.long), torch.ones_like(ids)], 1)
        kw = dict(attention_mask=mask, max_new_tokens=8, do_sample=False)
        assert torch.equal(plain.generate(padded, **kw), lean.generate(padded, **kw))  # left padding
    assert torch.equal(plain(ids).logits, lean(ids).logits)  # gradients on
    assert not any(calls[:1]) and calls[-1] == 0


def test_a_forward_that_is_not_exact_is_not_installed(tok, monkeypatch):
    import museforge.decode as decode
    from museforge.decode import lean_decoding
    from museforge.kernels import PackedLinear

    model = tiny_llama(tok)
    ids = torch.tensor([tok("rain on a city night")["input_ids"]])
    with torch.inference_mode():
        before = model(ids).logits
    original = decode._rms
    monkeypatch.setattr(decode, "_rms", lambda x, w, eps: original(x, w, eps * 10))
    assert not lean_decoding(model, PackedLinear)
    assert "forward" not in model.__dict__ and isinstance(model.model.layers[0].self_attn.q_proj, torch.nn.Linear)
    assert not hasattr(model.model.layers[0].self_attn, "qkv_proj")
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, before)


def test_unsupported_models_keep_their_forward(tok):
    from tinymodels import tiny_model

    from museforge.decode import supports

    gpt2 = tiny_model(tok).to(torch.bfloat16)
    assert not supports(gpt2) and _speed_up(gpt2, "", True) == "onednn-packed-bf16"
    scaled = tiny_llama(tok, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    assert not supports(scaled)
    assert _speed_up(tiny_llama(tok), "", False) is None  # pack=False: the model as transformers loaded it


def test_int8_lean_matches_int8_layers(tok):
    """int8 changes the logits (opt-in); the lean forward must still equal the model's own forward on them."""
    from transformers.cache_utils import DynamicCache

    model = tiny_llama(tok)
    assert _speed_up(model, "int8", True) == "int8+lean-llama"
    own = model.forward.lean.own_forward
    ids = torch.tensor([tok("rain on a city night and the lights")["input_ids"]])
    with torch.inference_mode():
        c1, c2 = DynamicCache(config=model.config), DynamicCache(config=model.config)
        assert torch.equal(own(input_ids=ids, cache=c1, use_cache=True).logits,
                           model(input_ids=ids, cache=c2, use_cache=True).logits)
    out = Generator("lyrics", model, tok).generate("rain", seed=1, max_new_tokens=12)
    assert out.text.strip()


def test_streamed_greedy_text_is_the_same_and_line_stops_turn_lookup_off(tok):
    from museforge.generation import NewlineStop

    plain, lean = lean_pair(tok)
    gen, ref = Generator("lyrics", lean, tok), Generator("lyrics", plain, tok)
    prompt = "la la la la la la la la la la la la la la la la"
    settings = gen.settings(seed=0, max_new_tokens=40, temperature=0.0, repetition_penalty=1.0)[0]
    calls = count_lean_calls(lean)
    assert "".join(gen.stream_text(prompt, settings)) == "".join(ref.stream_text(prompt, settings))
    assert any(c > 1 for c in calls[1:]), "streaming (with its Stop criterion) should still use lookup"
    # transformers checks other stopping criteria only after a whole chunk: no lookup with them
    assert not gen.exact_lookup({**gen.hf_kwargs(settings), "stopping_criteria": [NewlineStop(tok)]})


def test_beam_search_reorders_the_cache_and_stays_identical(tok):
    """transformers reorders the cache between beams (new tensors, not the lean buffers): the lean
    forward copies them in and goes on with the same logits."""
    plain, lean = lean_pair(tok)
    ids = torch.tensor([tok("rain on a city night")["input_ids"]])
    kw = dict(attention_mask=torch.ones_like(ids), max_new_tokens=12, num_beams=3, do_sample=False)
    calls = count_lean_calls(lean)
    with torch.inference_mode():
        assert torch.equal(plain.generate(ids, **kw), lean.generate(ids, **kw))
    assert calls and all(calls)


@pytest.mark.slow
def test_the_default_model_decodes_the_same_tokens_through_the_lean_forward():
    """The real SmolLM2-135M: greedy (with prompt lookup, and without) and sampled (with museforge's
    draw), against the untouched model and transformers' own sampling. "rain on a city night" once changed token 26 with lookup, before chunks
    computed the down projection's rows one at a time."""
    from museforge.generation import load_generator

    gen, plain = load_generator("lyrics"), load_generator("lyrics", pack=False)
    assert gen.source["kernels"] == "onednn-packed-bf16+lean-llama" and plain.source["kernels"] is None
    lean = gen.model.forward.lean
    for prompt in ("rain on a city night", "the last train home", "a broken guitar string"):
        ids = gen.tokenizer(gen.task.render(gen.tokenizer, prompt), add_special_tokens=False)["input_ids"]
        greedy = gen.settings(max_new_tokens=64, seed=3, temperature=0.0, repetition_penalty=1.0)[0]
        assert gen.exact_lookup(gen.hf_kwargs(greedy))
        covers, calls = lean.covers, count_lean_calls(gen.model)
        reference = plain.complete_ids(ids, greedy, n=1)
        assert gen.complete_ids(ids, greedy, n=1) == reference
        assert any(c > 1 for c in calls[1:]), "no proposed tokens were checked"
        lean.covers = covers
        gen.lookup = False
        assert gen.complete_ids(ids, greedy, n=1) == reference
        gen.lookup = True
        # and the logits themselves, bit for bit, through transformers' own generate
        x = torch.tensor([ids])
        kw = dict(attention_mask=torch.ones_like(x), max_new_tokens=48, do_sample=False, output_logits=True,
                  return_dict_in_generate=True)
        with torch.inference_mode():
            a = gen.model.generate(x, prompt_lookup_num_tokens=3, **kw).logits
            b = plain.model.generate(x, **kw).logits
        assert len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    # sampled, at batch 1 and 8, against transformers' own draw (museforge.sampling off for `plain`)
    plain.exact_sampler = False
    sampled = gen.settings(max_new_tokens=48, seed=3, temperature=0.8, top_p=0.95, top_k=50)[0]
    for n in (1, 8):
        assert gen.complete_ids(ids, sampled, n=n) == plain.complete_ids(ids, sampled, n=n)
