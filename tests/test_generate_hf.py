"""The hf teacher backend on a tiny random Llama built here (real tokenizer, real generate, left padding)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from test_openai_faults import write_examples

from rationale_sft.config import build
from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.rationales.backends.hf import generate_texts, load, render_chats
from rationale_sft.rationales.generate import generate
from rationale_sft.rundir import read_json

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def build_tiny_model(out: Path, chat_template: bool = True, seed: int = 0) -> Path:
    """Save a ~50k-parameter Llama with a byte-level BPE tokenizer trained on a few sentences."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["Age: 70 years. Hypertension raises dementia risk.", "Conclusion: likely", "Conclusion: unlikely",
              "Health history: diabetes, hearing loss, smoking, APOE e4 alleles, education years."] * 20
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _chats(n):
    return [[{"role": "system", "content": "Explain."},
             {"role": "user", "content": "Health history:\n" + "Age: 70 years. " * (i + 1)}] for i in range(n)]


def test_left_padded_batches_generate_what_single_prompts_do(tiny_dir):
    model, tok = load(str(tiny_dir))
    assert tok.padding_side == "left"
    batched, counts = generate_texts(model, tok, _chats(3), 12, 0.0, seed=1)
    single = [generate_texts(model, tok, [c], 12, 0.0, seed=1)[0][0] for c in _chats(3)]
    assert batched == single
    assert all(1 <= c <= 12 for c in counts)


def test_chat_template_used_when_present_plain_text_otherwise(tiny_dir, tmp_path):
    _, tok = load(str(tiny_dir))
    assert render_chats(tok, _chats(1))[0].startswith("<|system|>Explain.<|end|><|user|>")
    _, plain = load(str(build_tiny_model(tmp_path / "plain", chat_template=False)))
    assert render_chats(plain, _chats(1))[0] == "Explain.\n\nHealth history:\nAge: 70 years. \n\n"


def test_sampling_is_reproducible_from_the_seed(tiny_dir):
    model, tok = load(str(tiny_dir))
    a = generate_texts(model, tok, _chats(2), 10, 1.0, seed=5)[0]
    b = generate_texts(model, tok, _chats(2), 10, 1.0, seed=5)[0]
    c = generate_texts(model, tok, _chats(2), 10, 1.0, seed=6)[0]
    assert a == b and a != c


def test_stage_reports_unparseable_replies_as_failures(tiny_dir, tmp_path):
    examples = write_examples(tmp_path / "examples.parquet", ["ok"] * 3 + ["ok"], ["train"] * 3 + ["tuning"])
    cfg = build(TeacherConfig, {"backend": "hf", "model": str(tiny_dir), "max_new_tokens": 8, "batch_size": 2,
                                "styles": ["stepwise"], "mode": "blind", "allow_failures": True})
    generate(cfg, examples, tmp_path / "out")
    failures = read_json(tmp_path / "out" / "failures.json")
    # a random model never writes a conclusion line: every train item is reported, none dropped silently
    assert sorted(f["subject_id"] for f in failures) == [1, 2, 3]
    assert all("no conclusion line" in f["error"] and f["reply"] is not None for f in failures)
    assert all(f["seed"] is None for f in failures)  # greedy
    assert pl.read_parquet(tmp_path / "out" / "rationales.parquet").height == 0
    manifest = read_json(tmp_path / "out" / "manifest.json")
    assert manifest["rationales"]["generated_tokens"] > 0 and manifest["rationales"]["failed"] == 3


def test_sampled_runs_record_one_seed_per_batch(tiny_dir, tmp_path):
    examples = write_examples(tmp_path / "examples.parquet", ["ok"] * 4)
    cfg = build(TeacherConfig, {"backend": "hf", "model": str(tiny_dir), "max_new_tokens": 4, "batch_size": 2,
                                "styles": ["freeform"], "temperature": 0.8, "allow_failures": True})
    generate(cfg, examples, tmp_path / "out")
    seeds = [f["seed"] for f in read_json(tmp_path / "out" / "failures.json")]
    assert len(seeds) == 4 and all(isinstance(s, int) for s in seeds) and len(set(seeds)) == 2
