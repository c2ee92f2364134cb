import pytest
import torch
from tinymodels import tiny_model, tiny_tokenizer

from museforge.loss import chunked_lm_loss, fused_head, hidden_states_out


def reference(hidden, weight, labels):
    logits = (hidden @ weight.T).float()
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                             ignore_index=-100)


@pytest.mark.parametrize("chunk", [7, 1024])
def test_chunked_loss_matches_cross_entropy_and_its_gradients(chunk):
    torch.manual_seed(0)
    hidden = torch.randn(3, 20, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    labels = torch.randint(0, 50, (3, 20))
    labels[0, 5:9] = -100
    labels[2, :] = -100
    ref = reference(hidden, weight, labels)
    ref_gh, ref_gw = torch.autograd.grad(ref * 3, (hidden, weight))
    got = chunked_lm_loss(hidden, weight, labels, chunk=chunk)
    gh, gw = torch.autograd.grad(got * 3, (hidden, weight))
    assert torch.allclose(got, ref, rtol=1e-5)
    assert torch.allclose(gh, ref_gh, atol=1e-6) and torch.allclose(gw, ref_gw, atol=1e-6)
    assert gh[2].abs().max() == 0 and gh[0, 4:8].abs().max() == 0  # ignored positions get no gradient


def test_chunked_loss_under_bf16_autocast_follows_the_model_loss():
    """Inside a real model under autocast: the same loss and gradients as model(**batch).loss."""
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    model = tiny_model(tok).eval()  # no dropout: both passes must see the same network
    ids = torch.randint(0, len(tok), (2, 24))
    labels = ids.clone()
    labels[1, 10:] = -100
    head = fused_head(model)
    assert head is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = model(input_ids=ids, labels=labels).loss
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16), hidden_states_out(model, head):
        hidden = model(input_ids=ids).logits
        assert hidden.shape == (2, 24, model.config.n_embd)
        got = chunked_lm_loss(hidden, head.weight, labels, chunk=16)
    got.backward()
    assert abs(got.item() - ref.item()) < 1e-4
    for name, p in model.named_parameters():
        cos = torch.nn.functional.cosine_similarity(p.grad.flatten().float(), ref_grads[name].flatten().float(), dim=0)
        assert cos > 0.99, name
    assert model(input_ids=ids).logits.shape[-1] == len(tok)  # the head is back


def test_models_that_transform_logits_keep_their_own_loss():
    tok = tiny_tokenizer()
    model = tiny_model(tok)
    model.config.final_logit_softcapping = 30.0
    assert fused_head(model) is None


def test_chunked_token_nll_matches_per_position_cross_entropy():
    from museforge.loss import chunked_token_nll

    torch.manual_seed(1)
    hidden, weight = torch.randn(2, 12, 8), torch.randn(30, 8)
    labels = torch.randint(0, 30, (2, 12))
    labels[1, 6:] = -100
    logits = hidden @ weight.T
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100,
                                            reduction="none")
    got = chunked_token_nll(hidden, weight, labels, chunk=5)
    assert got.shape == (2, 11) and torch.allclose(got, ref, atol=1e-5)
    assert got[1, 5:].abs().max() == 0


def test_losses_too_large_for_a_float_probability_are_still_exact():
    """A target whose probability is below float32's smallest (exp(-150)) still gets its exact
    loss, not inf or a cap: the loss is not read off the probabilities the gradient uses."""
    from museforge.loss import chunked_token_nll

    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    weight = torch.tensor([[0.0, 0.0], [150.0, 0.0], [0.0, -150.0], [3.0, 3.0]])
    labels = torch.tensor([[0, 2, 1]])  # position 0 -> word 2 (logit 0 vs 150), position 1 -> word 1
    ref = torch.nn.functional.cross_entropy((hidden @ weight.T)[:, :-1].transpose(1, 2), labels[:, 1:],
                                            reduction="none")
    got = chunked_token_nll(hidden, weight, labels)
    assert ref[0, 0] > 149 and torch.isfinite(got).all()
    torch.testing.assert_close(got, ref)


def test_a_model_that_bypasses_its_head_module_still_gets_the_right_loss():
    from museforge.loss import lm_loss, lm_token_nll

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    model = tiny_model(tok).eval()
    head = fused_head(model)
    ids = torch.randint(0, len(tok), (2, 16))
    expected = model(input_ids=ids, labels=ids).loss

    class Bypass(torch.nn.Module):  # computes its logits with the head's weight, not by calling the head
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kw):
            out = self.inner.transformer(**kw)
            return type("Out", (), {"logits": out.last_hidden_state @ head.weight.T})()

    assert torch.allclose(lm_loss(Bypass(model), {"input_ids": ids, "labels": ids}, head), expected, atol=1e-5)
    for m in (Bypass(model), model):  # evaluation's per-position nll too, whichever way the logits come
        assert torch.allclose(lm_token_nll(m, {"input_ids": ids, "labels": ids}, head).mean(), expected, atol=1e-5)
    assert torch.allclose(lm_token_nll(model, {"input_ids": ids, "labels": ids}, None).mean(), expected, atol=1e-5)
    assert torch.allclose(lm_loss(model, {"input_ids": ids, "labels": ids}, head), expected, atol=1e-5)


def test_head_gradient_made_in_several_groups_matches_cross_entropy(monkeypatch):
    """Positions beyond one STASH make more than one head-gradient product: their sum is the gradient."""
    import museforge.loss as loss

    monkeypatch.setattr(loss, "STASH", 14)  # chunks of 7: groups of 14 positions, 57 positions in all
    torch.manual_seed(1)
    hidden = torch.randn(3, 20, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    labels = torch.randint(0, 50, (3, 20))
    labels[1, 3:12] = -100
    ref_gh, ref_gw = torch.autograd.grad(reference(hidden, weight, labels), (hidden, weight))
    gh, gw = torch.autograd.grad(chunked_lm_loss(hidden, weight, labels, chunk=7), (hidden, weight))
    assert torch.allclose(gh, ref_gh, atol=1e-6) and torch.allclose(gw, ref_gw, atol=1e-6)

