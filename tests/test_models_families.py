"""Model families: every family/size builds, runs forward/backward, is seeded; LoRA wrapping and its errors."""

import random

import pytest
import torch

from rationale_sft.config.model import LoraConfig
from rationale_sft.errors import InputError
from rationale_sft.models import load
from rationale_sft.models.families import FAMILIES, SIZES, build_model, n_params
from rationale_sft.models.lora import apply_lora, merge_or_save
from rationale_sft.models.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    r = random.Random(0)
    words = "patient hypertension diabetes stroke smoking memory visit pressure".split()
    texts = [" ".join(r.choice(words) for _ in range(30)) for _ in range(100)]
    return train_tokenizer(texts, 320, tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("size", sorted(SIZES))
def test_family_builds_trains_and_is_seeded(tok, family, size):
    model = build_model(family, size, tok, seed=3)
    assert model.config.vocab_size == len(tok) and model.config.hidden_size == SIZES[size].hidden
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    x = torch.randint(0, len(tok), (2, 24), generator=torch.Generator().manual_seed(0))
    out = model(input_ids=x, labels=x)
    assert out.logits.shape == (2, 24, len(tok)) and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    again, other = build_model(family, size, tok, seed=3), build_model(family, size, tok, seed=4)
    w = model.get_input_embeddings().weight
    assert torch.equal(w, again.get_input_embeddings().weight)
    assert not torch.equal(w, other.get_input_embeddings().weight)


def test_sizes_grow_and_init_leaves_global_rng_alone(tok):
    before = torch.get_rng_state()
    counts = {s: n_params(build_model("llama", s, tok, seed=0)) for s in SIZES}
    assert torch.equal(before, torch.get_rng_state())
    assert counts["xs"] < counts["s"]


def test_unknown_family_or_size_names_valid_ones(tok):
    with pytest.raises(InputError, match="valid families: llama, qwen2, gpt2, mistral"):
        build_model("bert", "xs", tok, 0)
    with pytest.raises(InputError, match="valid sizes: xs, s"):
        build_model("llama", "m", tok, 0)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_lora_trains_only_adapters_and_round_trips(tok, tmp_path, family):
    base = build_model(family, "xs", tok, seed=0)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    model, _ = load(tmp_path / "base")
    wrapped = apply_lora(model, LoraConfig(enabled=True, r=4))
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert n_params(wrapped, trainable_only=True) < n_params(wrapped) // 10
    with torch.no_grad():  # make the adapter non-trivial so the round trip is a real check
        for n, p in wrapped.named_parameters():
            if "lora_B" in n:
                p.add_(0.01)
    x = torch.randint(0, len(tok), (1, 12), generator=torch.Generator().manual_seed(1))
    wrapped.eval()
    expected = wrapped(input_ids=x).logits
    merge_or_save(wrapped, tmp_path / "adapter", tok)
    reloaded, rtok = load(tmp_path / "adapter")
    reloaded.eval()
    assert torch.allclose(reloaded(input_ids=x).logits, expected, atol=1e-5)
    assert rtok.get_vocab() == tok.get_vocab()
    merged_dir = merge_or_save(wrapped, tmp_path / "merged", tok, merge=True)
    merged, _ = load(merged_dir)
    assert not (merged_dir / "adapter_config.json").exists()
    assert torch.allclose(merged.eval()(input_ids=x).logits, expected, atol=1e-4)


def test_lora_bad_target_modules_name_the_available_layers(tok):
    model = build_model("qwen2", "xs", tok, seed=0)
    with pytest.raises(InputError, match=r"\['c_attn'\] match no linear layer.*gate_proj.*q_proj"):
        apply_lora(model, LoraConfig(enabled=True, target_modules=("q_proj", "c_attn")))


def test_mistral_attends_through_a_sliding_window(tok):
    llama, mistral = build_model("llama", "xs", tok, seed=0), build_model("mistral", "xs", tok, seed=0)
    window = mistral.config.sliding_window
    x = torch.randint(3, len(tok), (1, window + 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        diff = (llama(input_ids=x).logits - mistral(input_ids=x).logits).abs().amax(-1)[0]
    assert float(diff[:window].max()) < 1e-4 and float(diff[window + 8:].min()) > 1e-4
