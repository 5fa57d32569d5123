"""Tiny model families built from scratch: standard ``transformers`` architectures at two small sizes.

``FAMILIES`` maps a family name to a function ``(size, vocab_size, special_ids) -> PretrainedConfig``;
``SIZES`` holds the shape of each size. Every family ties its input and output embeddings, so the models
stay small and the label tokens' output rows are their input embeddings.

>>> sorted(FAMILIES)
['gemma', 'gpt2', 'llama', 'mistral', 'qwen2']
>>> model_config("llama", "xs", 512).num_hidden_layers
2
>>> model_config("llama", "xl", 512)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: unknown model size 'xl'; valid sizes: xs, s
>>> model_config("bert", "xs", 512)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: unknown model family 'bert'; valid families: llama, qwen2, gpt2, mistral, gemma
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from rationale_sft.errors import InputError
from rationale_sft.models.tokenizer import MAX_LENGTH as MAX_POSITIONS
from rationale_sft.seeding import derive_seed


@dataclass(frozen=True)
class Shape:
    """Shape of one model size (gated MLPs use ``mlp``; gpt2's plain MLP uses 4 x hidden)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    mlp: int


SLIDING_WINDOW = 256  # mistral: each layer attends to the last 256 positions (4096 of 32k in Mistral 7B)

SIZES = {
    "xs": Shape(hidden=128, layers=2, heads=4, kv_heads=2, mlp=352),
    "s": Shape(hidden=256, layers=4, heads=4, kv_heads=2, mlp=704),
}


def _common(shape: Shape, vocab_size: int, ids: dict) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=shape.hidden, intermediate_size=shape.mlp,
                num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                num_key_value_heads=shape.kv_heads, max_position_embeddings=MAX_POSITIONS,
                tie_word_embeddings=True, **ids)


def _llama(shape: Shape, vocab_size: int, ids: dict):
    from transformers import LlamaConfig

    return LlamaConfig(**_common(shape, vocab_size, ids))


def _qwen2(shape: Shape, vocab_size: int, ids: dict):
    from transformers import Qwen2Config

    return Qwen2Config(**_common(shape, vocab_size, ids))


def _mistral(shape: Shape, vocab_size: int, ids: dict):
    from transformers import MistralConfig

    # Mistral's defining trait is sliding-window attention; without it the model computes what llama does.
    return MistralConfig(**_common(shape, vocab_size, ids), sliding_window=SLIDING_WINDOW)


def _gemma(shape: Shape, vocab_size: int, ids: dict):
    from transformers import GemmaConfig

    return GemmaConfig(**_common(shape, vocab_size, ids), head_dim=shape.hidden // shape.heads)


def _gpt2(shape: Shape, vocab_size: int, ids: dict):
    from transformers import GPT2Config

    # No dropout, as in the other families: GPT-2's default 0.1 on embeddings, attention and residuals makes a
    # tiny model's training step about 4x slower on a CPU (measured at 8 x 1,024 tokens) and blurs the exact
    # copying of ages and values that its rationales need.
    return GPT2Config(vocab_size=vocab_size, n_embd=shape.hidden, n_layer=shape.layers, n_head=shape.heads,
                      n_inner=4 * shape.hidden, n_positions=MAX_POSITIONS, tie_word_embeddings=True,
                      embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0, **ids)


FAMILIES = {"llama": _llama, "qwen2": _qwen2, "gpt2": _gpt2, "mistral": _mistral, "gemma": _gemma}


def check_family_size(family: str, size: str) -> None:
    """Refuse a family or size that cannot be built from scratch, naming the valid choices.

    >>> check_family_size("lama", "xs")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: unknown model family 'lama' (did you mean 'llama'?); valid families: llama, qwen2, gpt2, mistral, gemma
    """
    for what, plural, value, valid in (("family", "families", family, FAMILIES), ("size", "sizes", size, SIZES)):
        if value not in valid:
            close = difflib.get_close_matches(str(value), list(valid), n=2, cutoff=0.6)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise InputError(f"unknown model {what} {value!r}{hint}; valid {plural}: {', '.join(valid)}")


def model_config(family: str, size: str, vocab_size: int, special_ids: dict | None = None):
    """The ``transformers`` config of ``family`` at ``size``; errors name the valid choices."""
    check_family_size(family, size)
    return FAMILIES[family](SIZES[size], vocab_size, dict(special_ids or {}))


def special_ids(tokenizer) -> dict:
    """pad/bos/eos token ids of a tokenizer, as config keyword arguments."""
    return {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}


def build_model(family: str, size: str, tokenizer, seed: int):
    """A randomly initialised causal LM of ``family``/``size`` sized to ``tokenizer``; init seeded by ``seed``."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = model_config(family, size, len(tokenizer), special_ids(tokenizer))
    # fork_rng: the init seed must not leak into (or depend on) the caller's global torch RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "model_init"))
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    return model


def n_params(model, trainable_only: bool = False) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
