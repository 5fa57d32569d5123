"""The hf teacher backend on a tiny random Llama built here (real tokenizer, real generate, left padding)."""

from __future__ import annotations


import polars as pl
import pytest
from openai_server import write_examples
from tiny_chat_model import build_tiny_model

from rationale_sft.config import build
from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.rationales.backends.hf import generate_texts, load, render_chats
from rationale_sft.rationales.generate import generate
from rationale_sft.rundir import read_json


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
