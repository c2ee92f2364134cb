"""museforge.sampling: the same draws as torch.multinomial and transformers' do_sample, token for token."""

import pytest
import torch
from tinymodels import tiny_model, tiny_tokenizer
from transformers.generation.logits_process import TopKLogitsWarper

import museforge.sampling as sampling
from museforge.generation import Generator


def _distributions(seed: int, batch: int, vocab: int = 4000) -> list[torch.Tensor]:
    """Probabilities as sampling makes them: after top-k, after nothing (every word possible), peaked."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, vocab, generator=g) * 3
    topk = torch.softmax(TopKLogitsWarper(50)(None, logits), -1)
    peaked = torch.softmax(logits * 8, -1)  # some probabilities underflow to 0
    return [topk, torch.softmax(logits, -1), peaked]


@pytest.mark.parametrize("batch", [1, 5])
def test_draws_equal_torch_multinomial_and_leave_the_same_generator_state(batch, monkeypatch):
    assert sampling.exact_draws()  # this torch: the fast draw is in use
    real = torch.multinomial
    for seed in range(4):
        tiny = torch.zeros(batch, 64)
        tiny[:, 40] = 1e-45  # p / q rounds to 0 for most q: then torch's argmax picks word 0, of p = 0
        for kind, probs in zip(("top-k", "every word", "peaked", "tiny"), [*_distributions(seed, batch), tiny], strict=True):
            torch.manual_seed(100 + seed)
            want = real(probs, 1).squeeze(1)
            after = torch.get_rng_state()
            torch.manual_seed(100 + seed)
            used = []
            monkeypatch.setattr(torch, "multinomial", lambda *a, used=used, **k: used.append(1) or real(*a, **k))
            got = sampling.multinomial(probs)
            monkeypatch.setattr(torch, "multinomial", real)
            assert torch.equal(got, want), kind
            assert torch.equal(torch.get_rng_state(), after), kind
            # after top-k (50 of 4,000 words) the draw is museforge's own; with every word possible
            # (a Python log1p each would cost more than torch's draw) it is torch's
            assert {"top-k": not used, "every word": used}.get(kind, True), kind


def test_probabilities_too_small_for_any_ratio_follow_torch():
    """p = 1e-45: p / q rounds to 0 unless q < ~1.4, and torch's argmax then picks word 0 (p = 0)."""
    tiny = torch.zeros(1, 64)
    tiny[0, 40] = 1e-45
    picks = set()
    for seed in range(60):
        torch.manual_seed(seed)
        want = torch.multinomial(tiny, 1).squeeze(1)
        torch.manual_seed(seed)
        assert torch.equal(sampling.multinomial(tiny), want)
        picks.add(int(want))
    assert picks == {0, 40}


def test_the_self_check_uses_generators_of_its_own():
    torch.manual_seed(3)
    before = torch.get_rng_state()
    assert sampling.exact_draws.__wrapped__()
    assert torch.equal(torch.get_rng_state(), before)  # a generation in another thread keeps its draws


def test_draws_from_a_given_generator():
    probs = _distributions(2, 3)[0]
    theirs, ours = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    assert torch.equal(sampling.multinomial(probs, ours), torch.multinomial(probs, 1, generator=theirs).squeeze(1))
    assert torch.equal(ours.get_state(), theirs.get_state()) and torch.equal(torch.get_rng_state(), before)


def test_a_zero_random_number_is_left_to_torch(monkeypatch):
    """q = 0 (a 53-bit zero) makes torch pick by its nan rule: the draw goes back to torch from the same state."""
    probs = _distributions(0, 2)[0]
    real = torch.Tensor.random_
    calls = []

    def random_with_a_zero(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        if self.dtype == torch.int64:
            calls.append(1)
            out.view(-1)[7] = 1 << 60  # high bits only: its low 53 bits are zero
        return out

    torch.manual_seed(5)
    want = torch.multinomial(probs, 1).squeeze(1)
    after = torch.get_rng_state()
    monkeypatch.setattr(torch.Tensor, "random_", random_with_a_zero)
    torch.manual_seed(5)
    got = sampling.multinomial(probs)
    assert calls and torch.equal(got, want) and torch.equal(torch.get_rng_state(), after)


@pytest.mark.parametrize("bad", ["nan", "negative", "all zero"])
def test_invalid_probabilities_raise_torch_own_error(bad):
    probs = _distributions(1, 2)[0].clone()
    probs[1] = {"nan": float("nan"), "negative": -0.1, "all zero": 0.0}[bad]
    with pytest.raises(RuntimeError) as theirs:
        torch.multinomial(probs, 1)
    with pytest.raises(RuntimeError) as ours:
        sampling.multinomial(probs)
    assert str(ours.value) == str(theirs.value)


@pytest.fixture(scope="module")
def model_and_tok():
    tok = tiny_tokenizer()
    return tiny_model(tok), tok


@pytest.mark.parametrize("settings", [dict(temperature=0.8, top_k=50, top_p=0.95), dict(temperature=1.3, top_k=0, top_p=0.9),
                                      dict(temperature=0.7, top_k=5, top_p=1.0), dict(temperature=1.0, top_k=None, top_p=None),
                                      dict(temperature=0.9), dict(temperature=0.8, top_k=10, top_p=0.9)])
@pytest.mark.parametrize("batch", [1, 3])
def test_generate_with_the_sampler_equals_do_sample(model_and_tok, settings, batch, monkeypatch):
    """Also transformers' defaults (top_k=50, top_p=1 when left out). The tiny vocabulary has 400
    words, so the fast draw serves rows with at most 12 possible words: the top_k 5 and 10 cases."""
    model, tok = model_and_tok
    ids = torch.tensor([tok("rain on the")["input_ids"]] * batch)
    common = dict(attention_mask=torch.ones_like(ids), max_new_tokens=30, min_new_tokens=30, pad_token_id=tok.pad_token_id,
                  repetition_penalty=1.15)
    hf = dict(do_sample=True, **settings)
    torch.manual_seed(11)
    want = model.generate(ids, **common, **hf)
    sampler = sampling.sampler_for(hf, model)
    assert sampler is not None
    real, fallbacks = torch.multinomial, []
    monkeypatch.setattr(torch, "multinomial", lambda *a, **k: fallbacks.append(1) or real(*a, **k))
    torch.manual_seed(11)
    got = model.generate(ids, **common, do_sample=False, temperature=None, top_k=None, top_p=None,
                         logits_processor=[sampler])
    assert torch.equal(got, want)
    if settings.get("top_k") in (5, 10):
        assert not fallbacks  # museforge's own draw, every step


def test_a_sampler_used_in_inference_mode_can_be_used_outside_it():
    sampler = sampling.ExactSampler(0.8, 5, None)
    scores = torch.randn(2, 400)
    with torch.inference_mode():
        sampler(None, scores.clone())
    torch.manual_seed(0)
    out = sampler(None, scores)
    assert out.shape == scores.shape and int((out == 0).sum()) == 2


def test_sampler_only_where_it_draws_what_transformers_would(model_and_tok):
    model, _ = model_and_tok
    plain = dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.95)
    assert sampling.sampler_for(plain, model) is not None
    assert sampling.sampler_for({**plain, "do_sample": False}, model) is None  # greedy
    assert sampling.sampler_for({**plain, "num_beams": 2}, model) is None
    assert sampling.sampler_for({**plain, "min_p": 0.1}, model) is None  # a warper it does not apply
    assert sampling.sampler_for({**plain, "output_scores": True}, model) is None  # scores would be its one-hot
    assert sampling.sampler_for({**plain, "renormalize_logits": True}, model) is None  # runs after the warpers
    assert sampling.sampler_for({**plain, "num_return_sequences": 2}, model) is None  # greedy refuses it
    for speculative in (dict(prompt_lookup_num_tokens=3), dict(assistant_model=model)):  # other draws
        assert sampling.sampler_for({**plain, **speculative}, model) is None
    # settings the call leaves out come from the model's generation config, as in transformers
    model.generation_config.min_p = 0.2
    try:
        assert sampling.sampler_for(plain, model) is None
    finally:
        model.generation_config.min_p = None
    # and then transformers' global defaults: top_k=50 when neither the call nor the model sets it
    assert [type(w).__name__ for w in sampling.sampler_for({"do_sample": True}, model).warpers] == ["TopKLogitsWarper"]
    model.generation_config.top_k = 7
    try:
        sampler = sampling.sampler_for({"do_sample": True, "temperature": 0.9}, model)
        assert [type(w).__name__ for w in sampler.warpers] == ["TemperatureLogitsWarper", "TopKLogitsWarper"]
        assert sampler.warpers[1].top_k == 7
    finally:
        model.generation_config.top_k = None


def test_generator_output_is_the_same_with_and_without_it(model_and_tok, monkeypatch):
    model, tok = model_and_tok
    gen = Generator("lyrics", model, tok)
    calls = []
    real = sampling.multinomial

    def counted(probs, *args, **kwargs):
        calls.append(probs.shape[0])
        return real(probs, *args, **kwargs)

    monkeypatch.setattr(sampling, "multinomial", counted)
    ids = tok("night")["input_ids"]
    for n, extra in ((1, {}), (4, {}), (4, {"top_k": 10})):  # the defaults (temperature, top-k 50, top-p,
        settings = gen.settings(max_new_tokens=25, seed=3, **extra)[0]  # repetition penalty); top-k 10: the fast draw
        gen.exact_sampler = False
        want = gen.complete_ids(ids, settings, n=n)
        assert not calls
        gen.exact_sampler = True
        assert gen.complete_ids(ids, settings, n=n) == want
        assert calls and calls[-1] == n
        calls.clear()
    # candidate lines (the constrained songs): the same lines and the same fluency scores
    lines = gen.sample_lines("the rain\n", 4, seed=2)
    assert calls
    gen.exact_sampler = False
    plain = gen.sample_lines("the rain\n", 4, seed=2)
    assert lines == plain and [line.logprob for line in lines] == [line.logprob for line in plain]


@pytest.mark.skipif(not sampling.exact_draws(), reason="this torch's draw is not reproduced: transformers samples")
def test_sampling_on_a_cpu_leaves_the_global_generator_to_other_threads(model_and_tok):
    """museforge's draw takes its numbers from a generator of its own, seeded like the global one
    (the same tokens, checked above), so a fine-tune drawing dropout from torch's global generator in
    another thread (the app's Fine-tune tab) is neither disturbed nor rewound by a generation."""
    import threading

    model, tok = model_and_tok
    gen = Generator("lyrics", model, tok)
    settings = gen.settings(max_new_tokens=10, seed=3, top_k=10)[0]
    ids = tok("night")["input_ids"]
    torch.manual_seed(123)
    want = torch.rand(2)
    inside, release = threading.Event(), threading.Event()
    real_generate = model.generate

    def paused(*args, **kwargs):
        inside.set()
        release.wait(5)
        return real_generate(*args, **kwargs)

    model.generate = paused
    try:
        torch.manual_seed(123)
        worker = threading.Thread(target=gen.complete_ids, args=(ids, settings))
        worker.start()
        assert inside.wait(5)
        during = torch.rand(1)  # the "fine-tune" draws while the generation runs
        release.set()
        worker.join(5)
        after = torch.rand(1)
    finally:
        model.generate = real_generate
    assert torch.equal(torch.cat([during, after]), want)  # its own stream, neither reseeded nor rewound
