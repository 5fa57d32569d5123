"""Tokenisation and collation: prompt + target segments -> input ids, labels (-100 outside the target), weights.

Segments are tokenised one by one and concatenated, so each label word is exactly the tokens it has on
its own (checked against the tokenizer's label ids) and its positions are known, never guessed. The text
joining two segments depends only on what precedes them: a label or rationale follows with one space
(none after a newline, as after a chat template's assistant header), the answer marker on a new line.

When prompt + target exceed ``max_len`` the oldest history items of the prompt are dropped from its
structured parts (``render.assemble.fit_prompt``, the one truncation; an "earlier diagnoses not shown" line
records how many); the target is never cut. A target that cannot fit even with the whole history dropped,
or an example left with zero trainable tokens, is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from rationale_sft.answer import joiner, prompt_ids, wrap_prompt
from rationale_sft.errors import InputError
from rationale_sft.render.assemble import PromptParts, fit_prompt, prompt_text

class Encoded(NamedTuple):
    """One tokenised training sequence (lists of equal length) and its bookkeeping."""

    input_ids: list[int]
    labels: list[int]
    weights: list[float]
    is_label: list[bool]
    n_prompt: int
    n_dropped: int


def segment_texts(context: str, segments: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(kind, text)`` with joiners applied, each segment's text as it is tokenised.

    >>> segment_texts("Q?\\nAnswer:", [("rationale", "Old."), ("marker", "Answer:"), ("label", "Yes")])
    [('rationale', ' Old.'), ('marker', '\\nAnswer:'), ('label', ' Yes')]
    """
    out, prev = [], context
    for kind, text in segments:
        piece = joiner(prev, kind) + text
        out.append((kind, piece))
        prev = piece
    return out


def encode_segments(tokenizer, context: str, segments, pad_unit: str = " .") -> list[tuple[str, list[int]]]:
    """``(kind, ids)`` per target segment; a ``pad`` segment becomes neutral tokens as long as its text."""
    out = []
    for kind, text in segment_texts(context, segments):
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if kind == "pad":
            unit = list(tokenizer(pad_unit, add_special_tokens=False)["input_ids"])
            ids = (unit * (len(ids) // max(len(unit), 1) + 1))[:len(ids)]
        out.append((kind, ids))
    return out


def encode(tokenizer, prompt: PromptParts | str, segments, *, max_len: int, chat: bool,
           weight: Callable[[str], float], pad_unit: str = " .", where: str = "example", system: str | None = "",
           prefix: str = "") -> Encoded:
    """Tokenise ``prefix`` + prompt + target under a token budget; labels are -100 outside the target.

    ``prompt`` is a row's parts (``render.assemble.prompt_parts``; its oldest history goes first when over
    budget) or a text that must fit whole; ``system`` is the chat system prompt (``answer.system_turn``).
    """
    def context_of(text: str) -> str:
        return wrap_prompt(tokenizer, prefix + text, chat, system)

    probe = encode_segments(tokenizer, context_of(prompt_text(prompt)), segments, pad_unit)
    n_target = sum(len(ids) for _, ids in probe)
    if n_target == 0:
        raise InputError(f"{where}: the target has zero trainable tokens; check the rationale and label text")
    budget = max_len - n_target
    if budget < 1:
        raise InputError(f"{where}: the target alone is {n_target} tokens, more than max_len={max_len}; "
                         "raise train.max_len")
    try:
        text, dropped = fit_prompt(prompt, budget, lambda p: len(prompt_ids(tokenizer, context_of(p), chat)))
    except InputError as exc:
        raise InputError(f"{where}: {exc} (train.max_len={max_len} less the target's {n_target} tokens)") from None
    context = context_of(text)
    ids = prompt_ids(tokenizer, context, chat)
    n_prompt = len(ids)
    labels, weights, is_label = [-100] * n_prompt, [0.0] * n_prompt, [False] * n_prompt
    for kind, seg in encode_segments(tokenizer, context, segments, pad_unit):
        ids += seg
        labels += seg
        weights += [float(weight(kind))] * len(seg)
        is_label += [kind == "label"] * len(seg)
    return Encoded(ids, labels, weights, is_label, n_prompt, dropped)


def collate(batch: Sequence[Encoded], pad_id: int):
    """Right-padded tensors: input_ids, attention_mask, labels (-100 on padding), weights, is_label."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    def pad(seq, value):
        return [list(s) + [value] * (width - len(s)) for s in seq]
    return {
        "input_ids": torch.tensor(pad([e.input_ids for e in batch], pad_id)),
        "attention_mask": torch.tensor(pad([[1] * len(e.input_ids) for e in batch], 0)),
        "labels": torch.tensor(pad([e.labels for e in batch], -100)),
        "weights": torch.tensor(pad([e.weights for e in batch], 0.0)),
        "is_label": torch.tensor(pad([e.is_label for e in batch], False)),
    }


def by_length(micro: Sequence[Sequence[int]], lengths: Sequence[int]) -> list[list[int]]:
    """One optimizer step's sequence indices regrouped by length into micro-batches of the same sizes, longest
    first: contiguous groups of the sorted lengths pad the least, and the step's peak memory comes with its
    first pass. Each group keeps the step's order, so a step of one micro-batch is left exactly as it was.

    >>> by_length([[0, 1], [2, 3], [4]], [5, 90, 7, 80, 6])
    [[1, 3], [2, 4], [0]]
    >>> by_length([[4, 0, 3]], [5, 90, 7, 80, 6])
    [[4, 0, 3]]
    """
    flat = [i for mb in micro for i in mb]
    position = {i: k for k, i in enumerate(flat)}
    longest = sorted(flat, key=lambda i: -lengths[i])  # stable: ties keep step order
    out, start = [], 0
    for mb in micro:
        out.append(sorted(longest[start:start + len(mb)], key=position.__getitem__))
        start += len(mb)
    return out


def padding(micro: Sequence[Sequence[int]], lengths: Sequence[int]) -> tuple[int, int]:
    """``(real, processed)`` tokens of right-padded micro-batches (processed = rows x longest row).

    >>> padding([[0, 1], [2]], [5, 90, 7])
    (102, 187)
    """
    real = sum(lengths[i] for mb in micro for i in mb)
    return real, sum(len(mb) * max((lengths[i] for i in mb), default=0) for mb in micro)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int):
    """Left-padded input_ids, attention_mask and position ids (0 at each row's first real token).

    >>> b = left_pad([[5, 6, 7], [8]], 0)
    >>> b["input_ids"].tolist(), b["attention_mask"].tolist(), b["position_ids"].tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]], [[0, 1, 2], [0, 0, 0]])
    """
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.tensor([[pad_id] * (width - len(s)) + list(s) for s in seqs])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos}


def pad_id(tokenizer) -> int:
    """The id used for padding: the pad token, else end-of-sequence, else 0."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0
