"""Pretraining: loss goes down, the saved dir loads, data order is seeded, bases are cached by content."""

import json
import random

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from rationale_sft import config
from rationale_sft.config.model import BaseModelConfig
from rationale_sft.errors import InputError
from rationale_sft.models import load
from rationale_sft.models.pretrain import ensure_base, pack, pretrain
from rationale_sft.models.tokenizer import train_tokenizer

SMALL = ["pretrain.steps=30", "pretrain.batch_size=8", "pretrain.seq_len=32", "pretrain.warmup_steps=3",
         "pretrain.log_every=5", "model.vocab_size=320", "pretrain.reasoning_steps=6"]


def texts(seed: int = 0, n: int = 120) -> list[str]:
    r = random.Random(seed)
    words = "patient hypertension diabetes stroke smoking memory visit pressure".split()
    return [" ".join(r.choice(words) for _ in range(20)) + ". Answer:" + r.choice([" Yes", " No"]) for _ in range(n)]


def reasoning_texts(n: int = 60) -> list[str]:
    r = random.Random(5)
    return [f"Step 1: the record shows {r.choice(['stroke', 'diabetes'])}. Step 2: so the risk is "
            f"{r.choice(['raised', 'lower'])}." for _ in range(n)]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(texts(), 320, tmp_path_factory.mktemp("tok"))


def cfg(*overrides: str) -> BaseModelConfig:
    return config.build(BaseModelConfig, {}, [*SMALL, *overrides])


def test_pretraining_reduces_loss_and_saves_a_loadable_dir(tok, tmp_path):
    stats = pretrain(cfg("model.family=qwen2"), texts(), tok, tmp_path / "base")
    log = pl.read_parquet(tmp_path / "base/pretrain_log.parquet")
    assert log["step"].to_list() == [5, 10, 15, 20, 25, 30]
    assert log["loss"][-1] < 0.6 * log["loss"][0] and stats["final_loss"] == pytest.approx(log["loss"][-1])
    assert (tmp_path / "base/DONE").is_file() and not list(tmp_path.glob(".base.tmp-*"))
    manifest = json.loads((tmp_path / "base/manifest.json").read_text())
    assert manifest["pretrain"]["n_params"] == stats["n_params"] and manifest["seeds"]["seed"] == 0
    model, loaded_tok = load(tmp_path / "base")
    assert model.config.model_type == "qwen2" and loaded_tok.get_vocab() == tok.get_vocab()
    # a second call finds DONE and returns the recorded statistics without training
    mtime = (tmp_path / "base/model.safetensors").stat().st_mtime_ns
    assert pretrain(cfg("model.family=qwen2"), texts(), tok, tmp_path / "base") == stats
    assert (tmp_path / "base/model.safetensors").stat().st_mtime_ns == mtime


def test_same_seed_same_weights_other_seed_differs(tok, tmp_path):
    weights = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        pretrain(cfg("pretrain.steps=4", f"pretrain.seed={seed}", "model.bf16_autocast=false"), texts(), tok,
                 tmp_path / name)
        weights[name] = load(tmp_path / name)[0].get_input_embeddings().weight
    assert torch.equal(weights["a"], weights["b"]) and not torch.equal(weights["a"], weights["c"])


def test_bf16_autocast_runs_only_where_the_device_has_native_bf16_and_the_stats_say_what_ran(tok, tmp_path,
                                                                                             bf16_cases):
    def run(name, bf16):
        stats = pretrain(cfg("pretrain.steps=4", f"model.bf16_autocast={str(bf16).lower()}"), texts(), tok,
                         tmp_path / name)
        return stats["bf16_autocast"], load(tmp_path / name)[0].get_input_embeddings().weight

    fp32, emulated, native = bf16_cases(run)
    assert (fp32[0], emulated[0], native[0]) == (False, False, True)
    assert torch.equal(emulated[1], fp32[1]) and not torch.equal(native[1], fp32[1])


def test_pack_appends_eos_and_rejects_a_too_small_corpus(tok):
    blocks = pack(["memory visit", "stroke"], tok, seq_len=2)
    flat = blocks.flatten().tolist()
    assert flat.count(tok.eos_token_id) >= 1 and blocks.shape[1] == 2
    with pytest.raises(InputError, match="fewer than one sequence of pretrain.seq_len=512"):
        pack(["memory"], tok, seq_len=512)


def test_ensure_base_caches_tokenizer_base_and_reasoning_base(tmp_path):
    calls = []

    def texts_fn(corpus):
        calls.append(corpus)
        return texts() if corpus == "base" else reasoning_texts()

    c = cfg("model.reasoning_base=true")
    out = ensure_base(c, texts_fn, tmp_path)
    kinds = sorted(p.name.split("-")[0] + ("-r" if "reasoning" in p.name else "") for p in tmp_path.iterdir())
    assert kinds == ["base", "base-r", "tokenizer"] and out.name.startswith("base-reasoning-")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pretrain"]["steps"] == 6 and manifest["inputs"]["init_dir"]["path"].startswith(str(tmp_path))
    stamps = {p: (p / "DONE").stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert ensure_base(c, texts_fn, tmp_path) == out  # second call: nothing retrained
    assert {p: (p / "DONE").stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps
    plain = ensure_base(cfg(), texts_fn, tmp_path)  # the reasoning base's own base, reused
    assert plain.name.startswith("base-") and "reasoning" not in plain.name and len(list(tmp_path.iterdir())) == 3
    ensure_base(cfg(), lambda corpus: texts(seed=9), tmp_path)  # another corpus: new tokenizer and base
    assert len(list(tmp_path.iterdir())) == 5
    # reasoning settings do not touch the plain base; its own training settings do (tokenizer reused)
    assert ensure_base(cfg("pretrain.reasoning_steps=7"), texts_fn, tmp_path) == plain
    assert ensure_base(cfg("pretrain.steps=2"), texts_fn, tmp_path) != plain
    assert len(list(tmp_path.iterdir())) == 6


def test_ensure_base_rejects_an_empty_corpus(tmp_path):
    with pytest.raises(InputError, match="'base' pretraining corpus is empty"):
        ensure_base(cfg(), lambda corpus: [], tmp_path)


def test_checkpoint_bases_are_resolved_not_trained(tok, tmp_path):
    pretrain(cfg("pretrain.steps=2"), texts(), tok, tmp_path / "ckpt")
    called = []
    out = ensure_base(cfg(f"model.checkpoint={tmp_path / 'ckpt'}"), called.append, tmp_path / "cache")
    assert out == tmp_path / "ckpt" and called == [] and not (tmp_path / "cache").exists()


def test_continuing_with_a_different_tokenizer_is_rejected(tok, tmp_path):
    pretrain(cfg("pretrain.steps=2"), texts(), tok, tmp_path / "a")
    other = train_tokenizer(texts(seed=3), 330, tmp_path / "other_tok")
    with pytest.raises(InputError, match="differs from the one saved"):
        pretrain(cfg("pretrain.steps=2"), texts(), other, tmp_path / "b", init_dir=tmp_path / "a")


def test_reasoning_base_of_a_checkpoint_follows_its_content(tok, tmp_path):
    import shutil

    pretrain(cfg("pretrain.steps=2"), texts(), tok, tmp_path / "ckpt")
    reasoning = cfg(f"model.checkpoint={tmp_path / 'ckpt'}", "model.reasoning_base=true", "pretrain.reasoning_steps=1")
    first = ensure_base(reasoning, lambda corpus: texts(), tmp_path / "cache")
    shutil.rmtree(tmp_path / "ckpt")
    pretrain(cfg("pretrain.steps=3"), texts(), tok, tmp_path / "ckpt")  # other weights, same path
    assert ensure_base(reasoning, lambda corpus: texts(), tmp_path / "cache") != first


def test_a_damaged_cached_base_is_rebuilt(tmp_path):
    texts_fn = lambda corpus: texts()
    out = ensure_base(cfg("pretrain.steps=2"), texts_fn, tmp_path)
    weights = out / "model.safetensors"
    good = weights.read_bytes()
    damaged = bytearray(good)
    damaged[-10] ^= 0xFF  # same size: only the content hash sees it
    weights.write_bytes(bytes(damaged))
    assert ensure_base(cfg("pretrain.steps=2"), texts_fn, tmp_path) == out
    assert weights.read_bytes() != bytes(damaged)


@pytest.mark.parametrize("packing", ["stream", "documents"])
def test_continuation_loss_learns_what_follows_the_marker_not_the_prompt(tok, tmp_path, packing):
    # random words (unlearnable) before the marker, always " Yes" after it
    yes = [t.rsplit("Answer:", 1)[0] + "Answer: Yes" for t in texts()]
    cont = pretrain(cfg("pretrain.loss_on=continuation", f"pretrain.packing={packing}"), yes, tok, tmp_path / "c")
    whole = pretrain(cfg(f"pretrain.packing={packing}"), yes, tok, tmp_path / "a")
    assert cont["final_loss"] < 0.3 < 1.0 < whole["final_loss"]
    budget = 30 * 8 * 32
    assert (cont["tokens"] < budget) if packing == "documents" else (cont["tokens"] == budget)


def test_document_rows_start_each_text_at_position_zero(tok):
    from rationale_sft.models.pretrain import document_rows

    docs = texts(n=3)
    rows = document_rows(docs, tok, 12, None)
    assert [ids for ids, _ in rows] == [tok(d, add_special_tokens=False)["input_ids"][:12] for d in docs]
    assert all(all(target) for _, target in rows)
    full = document_rows(docs, tok, 512, "Answer:")
    for (ids, target), d in zip(full, docs):
        assert ids[-1] == tok.eos_token_id and tok.decode([i for i, t in zip(ids, target) if t]).startswith(
            d.rsplit("Answer:", 1)[1])


def test_a_short_first_stage_trains_on_the_short_texts_then_continues_on_all(tmp_path):
    short = [f"Age {a}. Answer: aged {a}" for a in range(60, 80)] * 4
    asked = []

    def texts_fn(corpus):
        asked.append(corpus)
        return texts() if corpus == "base" else short

    c = cfg("pretrain.short_steps=5", "pretrain.short_batch_size=4", "pretrain.short_seq_len=16")
    out = ensure_base(c, texts_fn, tmp_path)
    first = [p for p in tmp_path.iterdir() if p.name.startswith("base-short-")]
    assert len(first) == 1 and set(asked) == {"base", "short"}
    stage1 = json.loads((first[0] / "manifest.json").read_text())["pretrain"]
    assert stage1["steps"] == 5 and stage1["corpus_texts"] == len(short)
    stage2 = json.loads((out / "manifest.json").read_text())["pretrain"]
    assert stage2["steps"] == 30 and stage2["corpus_texts"] == len(texts()) + len(short)
    assert stage2["init_dir"] == str(first[0])
    # without the short stage the base is another one; the corpus's short texts are then not read
    asked.clear()
    assert ensure_base(cfg(), texts_fn, tmp_path) != out and asked == ["base"]
    with pytest.raises(InputError, match="'short' pretraining corpus is empty"):
        ensure_base(c, lambda corpus: texts() if corpus == "base" else [], tmp_path / "other")


def test_a_copy_stage_trains_on_the_drills_alone_then_they_stay_in_the_mix_of_the_later_stages(tmp_path):
    drills = [f"- LDL: {v}\nQuestion: Restate.\nAnswer: LDL: {v}." for v in range(20)] * 2
    redrawn = [f"LDL {v}. Answer: the LDL is {v}" for v in range(10)]
    short = [f"Age {a}. Answer: aged {a}" for a in range(60, 80)] * 4
    asked = []

    def texts_fn(corpus):
        asked.append(corpus)
        return {"base": texts(), "short": short, "drill": drills, "redrawn": redrawn}[corpus]

    c = cfg("pretrain.copy_steps=4", "pretrain.short_steps=5", "pretrain.short_batch_size=4",
            "pretrain.short_seq_len=16")
    out = ensure_base(c, texts_fn, tmp_path)
    assert set(asked) == {"base", "short", "drill", "redrawn"}
    (first,) = [p for p in tmp_path.iterdir() if p.name.startswith("base-copy-")]
    (second,) = [p for p in tmp_path.iterdir() if p.name.startswith("base-short-")]
    stages = [json.loads((d / "manifest.json").read_text())["pretrain"] for d in (first, second, out)]
    assert [s["steps"] for s in stages] == [4, 5, 30]
    copying = len(drills) + len(redrawn)
    assert [s["corpus_texts"] for s in stages] == [len(drills), len(short) + copying,
                                                   len(texts()) + len(short) + copying]
    assert [s["init_dir"] for s in stages] == [None, str(first), str(second)]
    # the copying texts are the base's input: other redrawn texts, another base; no copy stage, another again
    other = ensure_base(c, lambda corpus: redrawn[:5] if corpus == "redrawn" else texts_fn(corpus), tmp_path)
    assert len({out, other, ensure_base(cfg("pretrain.short_steps=5", "pretrain.short_batch_size=4",
                                            "pretrain.short_seq_len=16"), texts_fn, tmp_path)}) == 3
    with pytest.raises(InputError, match="'drill' pretraining corpus is empty"):
        ensure_base(c, lambda corpus: [] if corpus == "drill" else texts_fn(corpus), tmp_path / "other")


def test_a_full_stage_trains_on_the_full_texts_alone_after_the_main_stage(tmp_path):
    short = [f"Age {a}. Answer: aged {a}" for a in range(60, 80)] * 4
    texts_fn = lambda corpus: texts() if corpus == "base" else short
    staged = ("pretrain.short_steps=5", "pretrain.short_batch_size=4", "pretrain.short_seq_len=16")
    without = ensure_base(cfg(*staged), texts_fn, tmp_path)
    out = ensure_base(cfg(*staged, "pretrain.full_steps=6"), texts_fn, tmp_path)
    assert out != without
    (main,) = [p for p in tmp_path.iterdir() if p.name.startswith("base-main-")]
    main_stats, full_stats = (json.loads((d / "manifest.json").read_text())["pretrain"] for d in (main, out))
    assert main_stats["steps"] == 30 and main_stats["corpus_texts"] == len(texts()) + len(short)
    assert full_stats["steps"] == 6 and full_stats["corpus_texts"] == len(texts())
    assert full_stats["init_dir"] == str(main)
    # the main stage is the base without a full stage, trained again under the new key: the same weights
    same = [torch.equal(a, b) for a, b in zip(load_file(main / "model.safetensors").values(),
                                              load_file(without / "model.safetensors").values())]
    assert same and all(same)
    # the stage's own peak learning rate; without the stage it is not part of the base's key
    assert ensure_base(cfg(*staged, "pretrain.full_steps=6", "pretrain.full_lr=0.01"), texts_fn, tmp_path) != out
    assert ensure_base(cfg(*staged, "pretrain.full_lr=0.01"), texts_fn, tmp_path) == without
    with pytest.raises(ValueError, match="full_steps must be >= 0"):
        cfg("pretrain.full_steps=-1")
