"""Byte-level BPE tokenizers trained on the corpus, with the label words as single tokens.

Scoring reads P(" Yes") and P(" No") at the answer slot, so each label word (with its leading space) must
be exactly one token, and the two tokens must differ. A trained tokenizer guarantees it: when the merges
learned from the corpus do not already produce a label word, merges are appended (deterministically) that
do. Special tokens: ``<|pad|>`` (0), ``<|bos|>`` (1), ``<|eos|>`` (2). Encoding adds no special tokens;
pretraining appends ``<|eos|>`` after every document.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from rationale_sft.answer import ANSWER_MARKER, LABEL_WORDS, PROMPT_END, SPACED_LABEL_WORDS, joiner, wrap_prompt
from rationale_sft.errors import InputError

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
SPECIAL_TOKENS = (PAD, BOS, EOS)
SPECIAL_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
"The ids ``train_tokenizer`` gives SPECIAL_TOKENS (the first of its vocabulary), as config keyword arguments."
MAX_LENGTH = 2048  # = the families' max_position_embeddings


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path | None = None,
                    label_words: Sequence[str] = SPACED_LABEL_WORDS):
    """Train a byte-level BPE tokenizer on ``texts``; save it to ``out_dir`` (AutoTokenizer loads it).

    The same corpus and vocab size give the same tokenizer. The vocabulary may exceed ``vocab_size`` by the
    few tokens needed to make every label word a single token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 300:
        raise InputError(f"tokenizer vocab_size must be >= 300 (256 bytes + special tokens), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise InputError("cannot train a tokenizer on an empty corpus: pass at least one non-empty text")
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tok = ensure_single_tokens(tok, label_words)
    fast = wrap(tok)
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def wrap(tok):
    """A ``PreTrainedTokenizerFast`` around a ``tokenizers.Tokenizer`` with this package's special tokens."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   model_max_length=MAX_LENGTH, padding_side="right", clean_up_tokenization_spaces=False)


def ensure_single_tokens(tok, words: Sequence[str]):
    """Return ``tok`` with merges appended so that each of ``words`` encodes as one token.

    Appended merges come last in rank order, so they only fire on pieces no learned merge joins further;
    they join the word's current pieces left to right.
    """
    from tokenizers import Tokenizer

    for word in words:
        pieces = tok.encode(word, add_special_tokens=False).tokens
        if len(pieces) <= 1:
            continue
        spec = json.loads(tok.to_str())
        vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
        as_list = not merges or isinstance(merges[0], list)
        joined = pieces[0]
        for piece in pieces[1:]:
            merges.append([joined, piece] if as_list else f"{joined} {piece}")
            joined += piece
            next_id = max([*vocab.values(), *(t["id"] for t in spec["added_tokens"])]) + 1
            vocab.setdefault(joined, next_id)
        tok = Tokenizer.from_str(json.dumps(spec))
        assert len(tok.encode(word, add_special_tokens=False).ids) == 1, f"could not make {word!r} one token"
    _check_ids_unique(tok)
    return tok


def _check_ids_unique(tok) -> None:
    # Appended vocab ids must not collide with the special tokens' ids (added tokens live beside the vocab).
    spec = json.loads(tok.to_str())
    ids = list(spec["model"]["vocab"].values()) + [t["id"] for t in spec["added_tokens"]
                                                   if t["content"] not in spec["model"]["vocab"]]
    assert len(ids) == len(set(ids)), "duplicate token ids after adding label merges"


def label_token_ids(tokenizer, words: Sequence[str] = SPACED_LABEL_WORDS, strict: bool = False) -> list[list[int]]:
    """Token ids of each label word (encoded as it follows the prompt: with its leading space).

    Warns (or, with ``strict``, raises) when a word takes several tokens; raises when two words share
    their first token, because the answer slot could not tell them apart.
    """
    ids = [tokenizer.encode(w, add_special_tokens=False) for w in words]
    for word, toks in zip(words, ids):
        if not toks:
            raise InputError(f"label word {word!r} encodes to no tokens; use a non-empty word")
        if len(toks) > 1:
            msg = (f"label word {word!r} is {len(toks)} tokens {toks}; scores read only its first token. "
                   f"Use a tokenizer trained by rationale_sft.models.tokenizer.train_tokenizer, or other words")
            if strict:
                raise InputError(msg)
            warnings.warn(msg, stacklevel=2)
    firsts = [t[0] for t in ids]
    for i, a in enumerate(firsts):
        for j in range(i + 1, len(firsts)):
            if a == firsts[j]:
                raise InputError(f"label words {words[i]!r} and {words[j]!r} share their first token {a}: "
                                 f"the answer slot cannot tell them apart; choose words that start differently")
    return ids


def vocab_report(tokenizer, words: Sequence[str] = SPACED_LABEL_WORDS) -> dict[str, list[str]]:
    """How each label word tokenizes (token strings), for logs and docs."""
    return {w: tokenizer.convert_ids_to_tokens(tokenizer.encode(w, add_special_tokens=False)) for w in words}


def slot_label_tokens(tokenizer, chat: bool, system: str | None = "", marker: str = ANSWER_MARKER) -> dict:
    """The label words' token strings at each answer slot, as training and scoring write and read them.

    ``after the prompt``: right after the (wrapped) prompt, the slot of the direct arms; with a chat template
    this is the start of the assistant turn, where a label has no leading space ("Yes", not " Yes").
    ``after the answer marker``: after a rationale and the marker, the slot of the generating arms.
    """
    places = {"after the prompt": wrap_prompt(tokenizer, "x" + PROMPT_END, chat, system),
              "after the answer marker": "x\n" + marker}
    return {place: {word: tokenizer.convert_ids_to_tokens(
        tokenizer(joiner(prev, "label") + word, add_special_tokens=False)["input_ids"]) for word in LABEL_WORDS}
        for place, prev in places.items()}

