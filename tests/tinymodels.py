"""Tiny in-process models and tokenizers: every fast test trains/generates in seconds, offline."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SHARED = ROOT.parent / "shared" / "data"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|endoftext|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(chat: bool = False):
    """A byte-level BPE (~400 tokens) trained on the sample data in a fraction of a second."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(p) for p in sorted(DATA.glob("*.txt"))], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_model(tokenizer, seed: int = 0):
    """A 2-layer, 32-wide GPT-2."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=32, n_layer=2, n_head=2,
                     eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(cfg)


def tiny_llama(tokenizer, **extra):
    """A 2-layer, 64-wide Llama (4 query heads sharing 2 key/value heads), fp32; `extra` goes to its config."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, **extra)
    return LlamaForCausalLM(config)




TINY_LABELS = {0: "teapot", 1: "lighthouse, beacon", 2: "meadow"}
TINY_CAPTION = "a lighthouse at night"


def _tiny_vit_config(**kw):
    from transformers import ViTConfig

    return ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, **kw)


def tiny_image_classifier(path: Path) -> Path:
    """A 1-layer ViT image classifier over TINY_LABELS, saved with its image processor. Its head is
    fixed so that "lighthouse" wins on every image (p = e^4 / (e^4 + 2) = 0.96)."""
    import torch
    from transformers import ViTForImageClassification, ViTImageProcessor

    model = ViTForImageClassification(_tiny_vit_config(id2label=TINY_LABELS,
                                                       label2id={v: k for k, v in TINY_LABELS.items()}))
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 4.0, 0.0]))
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def tiny_captioner(path: Path, tokenizer) -> Path:
    """A ViT + GPT-2 VisionEncoderDecoder whose greedy caption is always TINY_CAPTION: the decoder's
    last layer norm outputs one constant vector, the head ranks the caption's tokens first to last,
    and no_repeat_ngram_size=1 walks down that ranking to the end-of-text token."""
    import torch
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        VisionEncoderDecoderModel,
        ViTImageProcessor,
        ViTModel,
    )

    ids = tokenizer(TINY_CAPTION, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert len(set(ids)) == len(ids), "the caption's tokens must be distinct"
    eos = tokenizer.eos_token_id
    decoder = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                         add_cross_attention=True, is_decoder=True, tie_word_embeddings=False,
                                         bos_token_id=eos, eos_token_id=eos))
    with torch.no_grad():
        decoder.transformer.ln_f.weight.zero_()
        decoder.transformer.ln_f.bias.copy_(torch.nn.functional.one_hot(torch.tensor(0), 16).float())
        decoder.lm_head.weight.zero_()
        for rank, token in enumerate(ids):
            decoder.lm_head.weight[token, 0] = 20.0 - rank
    model = VisionEncoderDecoderModel(encoder=ViTModel(_tiny_vit_config()), decoder=decoder)
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")  # not eos: no_repeat_ngram_size would ban it
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = start, eos, eos
    model.generation_config.no_repeat_ngram_size = 1
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
