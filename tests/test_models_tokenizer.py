"""Tokenizer: deterministic training, single-token label words, AutoTokenizer round trip, label checks."""

import random

import pytest
from transformers import AutoTokenizer

from rationale_sft.errors import InputError
from rationale_sft.models.families import special_ids
from rationale_sft.models.tokenizer import EOS, PAD, SPECIAL_IDS, label_token_ids, train_tokenizer, vocab_report


def corpus(seed: int = 0, n: int = 200) -> list[str]:
    r = random.Random(seed)
    words = "patient hypertension diabetes stroke smoking memory visit pressure cholesterol hearing".split()
    return [" ".join(r.choice(words) for _ in range(30)) for _ in range(n)]


def test_same_corpus_gives_identical_tokenizer_files(tmp_path):
    texts = corpus()
    train_tokenizer(texts, 400, tmp_path / "a")
    train_tokenizer(texts, 400, tmp_path / "b")
    assert (tmp_path / "a/tokenizer.json").read_bytes() == (tmp_path / "b/tokenizer.json").read_bytes()
    train_tokenizer(corpus(seed=1), 400, tmp_path / "c")
    assert (tmp_path / "a/tokenizer.json").read_bytes() != (tmp_path / "c/tokenizer.json").read_bytes()


def test_label_words_single_tokens_even_when_absent_from_corpus(tmp_path):
    texts = corpus()
    assert not any("Yes" in t or " No" in t for t in texts)  # the merges must be added, not learned
    tok = train_tokenizer(texts, 400, tmp_path)
    ids = label_token_ids(tok, strict=True)
    assert len(ids[0]) == len(ids[1]) == 1 and ids[0] != ids[1]
    assert vocab_report(tok) == {" Yes": ["ĠYes"], " No": ["ĠNo"]}
    # the label merges compose with ordinary text and decode back exactly
    text = "patient said Yes, then No. Yesterday: Nope"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode(" Yes")[0] in tok.encode("patient said Yes")


def test_saved_tokenizer_loads_with_special_tokens(tmp_path):
    tok = train_tokenizer(corpus(), 400, tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert (loaded.pad_token, loaded.eos_token) == (PAD, EOS)
    assert (loaded.pad_token_id, loaded.bos_token_id, loaded.eos_token_id) == (0, 1, 2)
    assert special_ids(loaded) == SPECIAL_IDS  # what validate and --cost assume of a grid-trained tokenizer
    assert loaded.encode("memory visit") == tok.encode("memory visit")
    assert loaded.encode("memory", add_special_tokens=True) == tok.encode("memory")  # adds no bos/eos
    assert label_token_ids(loaded) == label_token_ids(tok)


def test_label_checks_report_multi_token_and_colliding_words(tmp_path):
    tok = train_tokenizer(corpus(), 400, tmp_path)
    with pytest.warns(UserWarning, match=r"' Maybe' is \d+ tokens"):
        ids = label_token_ids(tok, words=(" Yes", " Maybe"))
    assert len(ids[1]) > 1
    with pytest.raises(InputError, match="Maybe"):
        label_token_ids(tok, words=(" Yes", " Maybe"), strict=True)
    with pytest.raises(InputError, match="share their first token"):
        label_token_ids(tok, words=(" Yes", " Yesterday"))


def test_rejects_empty_corpus_and_tiny_vocab(tmp_path):
    with pytest.raises(InputError, match="empty corpus"):
        train_tokenizer(["", "  "], 400, tmp_path)
    with pytest.raises(InputError, match="vocab_size"):
        train_tokenizer(corpus(), 100, tmp_path)
