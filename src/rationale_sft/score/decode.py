"""Rationale generation up to the answer marker: a KV-cached decode loop that stops on the marker's token ids.

Contexts are sorted by length and batched; each batch is left-padded (explicit position ids, 0 at each
row's first real token), prefilled once, then fed one token per row and step through the model with its
cache. A row stops when its newest tokens equal the marker's ids (trained students write the marker as
exactly these ids, because targets are tokenised segment by segment), on end-of-sequence, or at
``max_new_tokens``; a row that stops without the marker has the marker's ids fed after its text
(``marker_found = False``). Nothing is generated past the marker, no text is decoded inside the loop, and
finished rows leave the batch and its cache.

The same passes give both answer slots without extra forward passes: the prefill's last position is the
slot right after the prompt (``direct``), and the step that feeds the marker's last token gives the slot
after the rationale (``after``). A row whose text spells the marker with other tokens is cut there once,
after the loop, and its ``after`` slot is read by one extra pass on the cut sequence.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from rationale_sft import progress
from rationale_sft.seeding import derive_seed
from rationale_sft.train.data import left_pad, pad_id


class Generated(NamedTuple):
    """One row's continuation: token ids up to and including the marker, its text, whether it was written."""

    ids: list[int]
    text: str
    marker_found: bool


class Slot(NamedTuple):
    """One answer slot per row: log-probabilities of the requested token ids, and the most likely token id."""

    logp: np.ndarray
    top: np.ndarray


class Decoded(NamedTuple):
    """Per context: its continuation, the direct and after-marker slots, the hidden state after the marker."""

    gens: list[Generated]
    direct: Slot
    after: Slot
    states: np.ndarray | None


@dataclass(frozen=True)
class _Spec:
    """What every batch of one decode call shares."""

    marker_ids: tuple[int, ...]
    eos: int | None
    pad: int
    max_new: int
    greedy: bool
    temperature: float
    top_p: float
    slot_ids: tuple[int, ...]
    states: bool
    bf16: bool
    drop_finished: bool
    device: str
    cache_kw: str


@dataclass
class _Row:
    """Decoding state of one row: tokens written, tokens still to feed, whether (and how) it stopped."""

    new: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    stopped: bool = False
    found: bool = False

    @property
    def done(self) -> bool:
        return self.stopped and not self.pending

    def feed(self, sampled: int, spec: _Spec) -> int:
        """The token this row feeds next, given the token sampled for it (ignored once the row stopped)."""
        if self.done:
            return spec.pad  # only when finished rows stay in the batch (drop_finished=False)
        if not self.stopped:
            marker = list(spec.marker_ids)
            if sampled == spec.eos:
                self.stopped, self.pending = True, marker
            else:
                self.new.append(sampled)
                self.found = self.new[-len(marker):] == marker
                self.stopped = self.found or len(self.new) >= spec.max_new
                self.pending = [sampled] + ([] if self.found or not self.stopped else marker)
        return self.pending.pop(0)


def cut_at_marker(tokenizer, ids: Sequence[int], marker: str) -> int | None:
    """Number of leading tokens whose decoded text first contains ``marker`` (None when it never does)."""
    text = tokenizer.decode(list(ids), skip_special_tokens=False)
    if marker not in text:
        return None
    lo, hi = 1, len(ids)
    while lo < hi:  # the shortest prefix containing the marker (containment is monotone in the prefix)
        mid = (lo + hi) // 2
        if marker in tokenizer.decode(list(ids[:mid]), skip_special_tokens=False):
            hi = mid
        else:
            lo = mid + 1
    return lo


def finish(tokenizer, new: list[int], marker: str, marker_ids: list[int], stop_ids: set) -> Generated:
    """Cut a continuation after its first marker, or strip padding/EOS and append the marker."""
    cut = cut_at_marker(tokenizer, new, marker)
    if cut is not None:
        ids = new[:cut]
        return Generated(ids, tokenizer.decode(ids, skip_special_tokens=True), True)
    while new and new[-1] in stop_ids:
        new = new[:-1]
    ids = new + list(marker_ids)
    return Generated(ids, tokenizer.decode(new, skip_special_tokens=True), False)


def generate_to_marker(model, tokenizer, contexts: Sequence[Sequence[int]], *, marker: str, marker_ids: list[int],
                       max_new_tokens: int, batch_size: int, greedy: bool, temperature: float, seed: int,
                       device: str) -> list[Generated]:
    """Generate each context's continuation until ``marker`` (e.g. '\\nAnswer:'), batched by length."""
    return decode_to_marker(model, tokenizer, contexts, marker=marker, marker_ids=marker_ids,
                            max_new_tokens=max_new_tokens, batch_size=batch_size, greedy=greedy,
                            temperature=temperature, seed=seed, device=device).gens


def decode_to_marker(model, tokenizer, contexts: Sequence[Sequence[int]], *, marker: str, marker_ids: Sequence[int],
                     max_new_tokens: int, batch_size: int, greedy: bool, temperature: float, seed: int,
                     device: str, slot_ids: Sequence[int] = (), states: bool = False, bf16: bool = False,
                     drop_finished: bool = True, top_p: float = 1.0,
                     row_seeds: Sequence[int] | None = None, repeats: int = 1) -> Decoded:
    """Continuations up to ``marker`` (text) / ``marker_ids`` (its ids), with log P(``slot_ids``) at both slots.

    Sampling (``greedy=False``) draws each row from its own generator, seeded by ``row_seeds[i]`` when given
    (e.g. derived from a subject and a sample number), else by ``seed`` and the row's index in ``contexts``,
    so greedy and sampled results do not depend on which rows share a batch. ``top_p`` < 1 samples from the
    smallest set of most likely tokens whose probability reaches ``top_p`` (nucleus sampling). ``states``
    also returns the last-layer hidden state at the after-marker slot; ``bf16`` runs under bf16 autocast;
    ``drop_finished=False`` keeps finished rows in the batch (for benchmarks).

    ``repeats`` = K > 1 decodes each context K times from one prefill, its KV cache copied to K rows: the
    results are those of ``contexts`` with each context repeated K times in a row (context-major, and
    ``row_seeds`` in that order), and ``batch_size`` counts decoded rows, so a batch prefills
    max(1, batch_size // K) contexts.
    """
    if not marker_ids:
        raise ValueError("marker_ids is empty: the answer marker must tokenise to at least one token")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if row_seeds is not None and len(row_seeds) != len(contexts) * repeats:
        raise ValueError(f"row_seeds has {len(row_seeds)} seeds for {len(contexts)} contexts x {repeats} repeats; "
                         "give one per decoded row")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    spec = _Spec(tuple(marker_ids), tokenizer.eos_token_id, pad_id(tokenizer), max_new_tokens, greedy, temperature,
                 top_p, tuple(slot_ids), states, bf16, drop_finished, device, _cache_kw(model))
    n = len(contexts) * repeats
    rows: list[_Row | None] = [None] * n
    direct, after = np.zeros((n, len(slot_ids))), np.zeros((n, len(slot_ids)))
    tops = np.zeros((2, n), dtype=np.int64)
    hidden: list = [None] * n
    order = np.argsort([len(c) for c in contexts], kind="stable")
    per_batch = max(1, batch_size // repeats)
    with progress.stage("generate" if greedy else "sample", n, unit="texts") as advance:
        for start in range(0, len(contexts), per_batch):
            idx = order[start:start + per_batch]
            out_rows = [int(i) * repeats + j for i in idx for j in range(repeats)]
            gens = None if greedy else [_generator(seed, r, row_seeds) for r in out_rows]
            res = _decode_batch(model, [contexts[i] for i in idx], gens, spec, repeats)
            for k, i in enumerate(out_rows):
                rows[i], hidden[i] = res["rows"][k], res["hidden"][k]
                direct[i], tops[0, i] = res["direct"].logp[k], res["direct"].top[k]
                after[i], tops[1, i] = res["after"][k]
            advance(len(out_rows))
    gens_out, reread = _finish_rows(tokenizer, rows, marker, spec)
    _reread(model, [list(contexts[i // repeats]) + gens_out[i].ids for i in reread], reread, after, tops[1],
            hidden, spec, batch_size)
    return Decoded(gens_out, Slot(direct, tops[0]), Slot(after, tops[1]),
                   np.stack(hidden) if states and n else None)


def _cache_kw(model) -> str:
    """The forward keyword that takes the KV cache (``cache`` in newer transformers, else ``past_key_values``).

    A peft wrapper's forward takes ``**kwargs``, so the keyword is read off the model it wraps."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _new_cache(model, capacity: int):
    """A dynamic KV cache whose full-attention layers write into buffers of ``capacity`` positions.

    The stock layer concatenates its whole cache at every step (quadratic copying over a generation); a
    preallocated buffer writes one position per step. Sliding-window layers (mistral) stay as they are.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    layers = getattr(cache, "layers", [])
    for k, layer in enumerate(layers):
        if type(layer) is DynamicLayer:
            layers[k] = _make_buffer_layer(DynamicLayer)(capacity)
    return cache


def _make_buffer_layer(base):
    class BufferLayer(base):
        """A cache layer with preallocated key/value buffers; ``keys``/``values`` are views of the filled part."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity, self.length = capacity, 0

        def lazy_initialization(self, key_states, value_states) -> None:
            super().lazy_initialization(key_states, value_states)
            b, h, _, d = key_states.shape
            self.kbuf = key_states.new_empty(b, h, self.capacity, d)
            self.vbuf = value_states.new_empty(b, h, self.capacity, value_states.shape[-1])

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = key_states.shape[-2]
            assert self.length + n <= self.capacity, "KV buffer overflow"
            self.kbuf[:, :, self.length:self.length + n] = key_states
            self.vbuf[:, :, self.length:self.length + n] = value_states
            self.length += n
            self.keys, self.values = self.kbuf[:, :, :self.length], self.vbuf[:, :, :self.length]
            return self.keys, self.values

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.length:
                self.kbuf, self.vbuf = (t.repeat_interleave(repeats, dim=0) for t in (self.kbuf, self.vbuf))
                self.keys, self.values = self.kbuf[:, :, :self.length], self.vbuf[:, :, :self.length]

        def batch_select_indices(self, indices) -> None:
            if self.length:
                self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
                self.keys, self.values = self.kbuf[:, :, :self.length], self.vbuf[:, :, :self.length]

    return BufferLayer


def _generator(seed: int, row: int, row_seeds: Sequence[int] | None):
    import torch

    return torch.Generator().manual_seed(derive_seed(seed, f"generation row {row}") if row_seeds is None
                                         else int(row_seeds[row]))


def _forward(model, ids, mask, pos, cache, spec: _Spec, states: bool):
    """Logits (float32) and optionally the last-layer hidden state at each row's last position."""
    import torch

    dev = spec.device
    with torch.no_grad(), torch.autocast(torch.device(dev).type, dtype=torch.bfloat16, enabled=spec.bf16):
        out = model(input_ids=ids.to(dev), attention_mask=mask, position_ids=pos.to(dev), use_cache=True,
                    logits_to_keep=1, output_hidden_states=states, **{spec.cache_kw: cache})
    hidden = out.hidden_states[-1][:, -1, :].float() if states else None
    return out.logits[:, -1, :].float(), hidden


def _read(logits, slot_ids: tuple[int, ...]) -> Slot:
    import torch

    logp = torch.log_softmax(logits, dim=-1)
    return Slot(logp[:, list(slot_ids)].cpu().double().numpy(), logp.argmax(-1).cpu().numpy())


def _pick(logits, gens, spec: _Spec):
    """Next token per row: argmax, or inverse-CDF sampling with one uniform draw from each row's generator."""
    import torch

    if spec.greedy:
        return logits.argmax(-1)
    probs = _nucleus(torch.softmax(logits / spec.temperature, dim=-1), spec.top_p)
    cdf = probs.cumsum(-1)
    u = torch.stack([torch.rand((), generator=g) for g in gens]).to(cdf.device)
    # right=True: the first index whose cdf exceeds the draw, so a zero-probability token is never picked
    picked = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return picked.clamp(max=logits.shape[-1] - 1)


def _nucleus(probs, top_p: float):
    """``probs`` with every token outside the top-``top_p`` nucleus set to 0 (not renormalised).

    The most likely token is always kept, so a tiny ``top_p`` keeps exactly the argmax (the first of tied
    maxima, as ``argmax`` picks): sampling then writes the greedy text.

    >>> import torch
    >>> [round(p, 2) for p in _nucleus(torch.tensor([[0.1, 0.6, 0.3]]), 0.7)[0].tolist()]
    [0.0, 0.6, 0.3]
    >>> [round(p, 2) for p in _nucleus(torch.tensor([[0.4, 0.4, 0.2]]), 1e-9)[0].tolist()]
    [0.4, 0.0, 0.0]
    """
    import torch

    if top_p >= 1:
        return probs
    ordered, idx = probs.sort(dim=-1, descending=True, stable=True)
    ordered = ordered * ((ordered.cumsum(-1) - ordered) < top_p)
    return torch.zeros_like(probs).scatter(-1, idx, ordered)


def _decode_batch(model, ctxs: list, gens: list | None, spec: _Spec, repeats: int = 1) -> dict:
    """Prefill one left-padded batch, copy each row ``repeats`` times, then decode until every row is done;
    per decoded row its state and slots."""
    import torch

    batch = left_pad(ctxs, spec.pad)
    mask = batch["attention_mask"].to(spec.device)
    pos = batch["position_ids"][:, -1:].to(spec.device)
    cache = _new_cache(model, batch["input_ids"].shape[1] + spec.max_new + len(spec.marker_ids) + 1)
    logits, _ = _forward(model, batch["input_ids"], mask, batch["position_ids"], cache, spec, False)
    direct = _read(logits, spec.slot_ids)
    if repeats > 1:  # one prefill per context; its cache, mask, position and logits copied per sample
        cache.batch_repeat_interleave(repeats)
        mask, pos, logits = (t.repeat_interleave(repeats, dim=0) for t in (mask, pos, logits))
        direct = Slot(np.repeat(direct.logp, repeats, axis=0), np.repeat(direct.top, repeats))
    b = len(ctxs) * repeats
    rows, after, hidden = [_Row() for _ in range(b)], [None] * b, [None] * b
    live = list(range(b))  # batch rows still in the cache, in cache order
    while live:
        sampled = _pick(logits, None if gens is None else [gens[r] for r in live], spec).tolist()
        feed = torch.tensor([[rows[r].feed(t, spec)] for r, t in zip(live, sampled)])
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
        pos = pos + 1
        logits, h = _forward(model, feed, mask, pos, cache, spec, spec.states)
        now = [j for j, r in enumerate(live) if rows[r].done and after[r] is None]
        if now:
            got = _read(logits[now], spec.slot_ids)
            for k, j in enumerate(now):
                after[live[j]] = (got.logp[k], got.top[k])
                hidden[live[j]] = h[j].cpu().numpy() if spec.states else None
        keep = [j for j, r in enumerate(live) if not rows[r].done]
        if not keep:
            break
        if spec.drop_finished and len(keep) < len(live):
            sel = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(sel)
            mask, pos, logits, live = mask[sel], pos[sel], logits[sel], [live[j] for j in keep]
    return {"rows": rows, "direct": direct, "after": after, "hidden": hidden}


def _finish_rows(tokenizer, rows: list[_Row], marker: str, spec: _Spec) -> tuple[list[Generated], list[int]]:
    """Each row's ``Generated``; rows cut by the text-level fallback are listed for a re-read of their slot."""
    out, reread = [], []
    for i, row in enumerate(rows):
        cut = None if row.found else cut_at_marker(tokenizer, row.new, marker)
        if row.found or cut is not None:
            ids = row.new if cut is None else row.new[:cut]
            out.append(Generated(ids, tokenizer.decode(ids, skip_special_tokens=True), True))
            if cut is not None:
                reread.append(i)
        else:
            out.append(Generated(row.new + list(spec.marker_ids),
                                 tokenizer.decode(row.new, skip_special_tokens=True), False))
    return out, reread


def _reread(model, seqs: list, rows: list[int], after: np.ndarray, tops: np.ndarray, hidden: list, spec: _Spec,
            batch_size: int) -> None:
    """Read the after-marker slot of ``rows`` (cut by text, not ids) by one pass on their sequences (in place)."""
    from rationale_sft.score.slot import forward_last

    for start in range(0, len(rows), batch_size):
        part = rows[start:start + batch_size]
        logp, h = forward_last(model, left_pad(seqs[start:start + batch_size], spec.pad), spec.device, spec.states)
        for k, i in enumerate(part):
            after[i], tops[i] = logp[k, list(spec.slot_ids)].double().numpy(), int(logp[k].argmax())
            if spec.states:
                hidden[i] = h[k]
