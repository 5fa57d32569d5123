"""Rationale decoding: new tokens/s of the scoring decoder against HF generate(), same model and prompts, one run.

Prints: greedy new tokens/s of ``score.generate.decode_to_marker`` and of ``model.generate()`` (KV cache,
left-padded batches) and their ratio; the decoder with and without dropping finished rows from the batch,
when rows stop at different steps; and the time of rationale scoring (``score_contexts``, mode generate)
against the previous path (generate() with a stopping criterion that decodes text at every step, then two
more forward passes for the direct and after-marker slots). The model is a random tiny llama, so rows
do not write the marker by themselves; the stop test samples and stops on a token that they do write.

    .venv/bin/python benchmarks/bench_decode.py [--n 64] [--prompt-tokens 400] [--new 256] [--batch 64] [--size s] [--repeats 2]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import torch

from rationale_sft.config.score import ScoreConfig
from rationale_sft.models import load
from rationale_sft.score.decode import decode_to_marker, finish
from rationale_sft.score.stage import marker_text, score_contexts
from rationale_sft.score.slot import slot_scores
from rationale_sft.train.data import left_pad, pad_id
from rationale_sft.train.toy import toy_data, toy_model


def prompts_of(tok, n: int, length: int) -> list[list[int]]:
    """``n`` contexts of about ``length`` tokens: toy prompts joined until long enough, each ending a prompt."""
    texts = toy_data(n=n * 8, seed=0)[0]["prompt"].to_list()
    out, k = [], 0
    for _ in range(n):
        ids: list[int] = []
        while len(ids) < length:
            ids = tok(texts[k % len(texts)], add_special_tokens=False)["input_ids"] + ids
            k += 1
        out.append(ids[-length:])
    return out


def hf_generate(model, tok, contexts, new: int, batch: int, stopping=None) -> list[list[int]]:
    """Greedy generate() per left-padded batch; each row's new tokens (pad/EOS tail kept)."""
    out = []
    for start in range(0, len(contexts), batch):
        b = left_pad(contexts[start:start + batch], pad_id(tok))
        with torch.no_grad():
            seqs = model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], do_sample=False,
                                  max_new_tokens=new, pad_token_id=pad_id(tok), eos_token_id=tok.eos_token_id,
                                  use_cache=True, stopping_criteria=stopping)
        out += seqs[:, b["input_ids"].shape[1]:].tolist()
    return out


def written(row: list[int], eos: int) -> int:
    """Tokens a row wrote before its first EOS."""
    return row.index(eos) if eos in row else len(row)


def text_stopper(tok, marker: str, start: int):
    """The previous per-step stopping criterion: decode each row's newest tokens (after ``start``), find the marker."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class MarkerStop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            tails = input_ids[:, max(start, input_ids.shape[1] - 16):].tolist()
            return torch.tensor([marker in tok.decode(t) for t in tails])

    return StoppingCriteriaList([MarkerStop()])


def old_scoring(model, tok, contexts, tails, cfg: ScoreConfig) -> None:
    """The previous rationale scoring: slot pass, generate() with the text stopper, slot pass after the marker."""
    mtext = marker_text("Answer:")
    mids = tok(mtext, add_special_tokens=False)["input_ids"]
    slot_scores(model, tok, contexts, tails, batch_size=cfg.batch_size, device="cpu")
    stopper = text_stopper(tok, mtext, max(map(len, contexts)))
    new = hf_generate(model, tok, contexts, cfg.max_new_tokens, cfg.batch_size, stopper)
    gens = [finish(tok, row, mtext, mids, {pad_id(tok), tok.eos_token_id}) for row in new]
    slot_scores(model, tok, [c + g.ids for c, g in zip(contexts, gens)], ["Answer:"] * len(contexts),
                batch_size=cfg.batch_size, device="cpu")


def timed(fn):
    """``fn()``, and its wall seconds and CPU seconds (all threads of this process; descheduled time does
    not count, so it is the steadier figure on a shared machine)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def best(runs: list[tuple]) -> tuple:
    """The output of the runs, and the least wall and CPU seconds among them (the least disturbed)."""
    return runs[0][0], min(r[1] for r in runs), min(r[2] for r in runs)


def rates(n: int, wall: float, cpu: float) -> str:
    return f"{n / wall:8.0f} new tok/s, {n / cpu:8.0f} per CPU-s  ({n} tokens, {wall:.1f} s wall)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="prompts")
    ap.add_argument("--prompt-tokens", type=int, default=400)
    ap.add_argument("--new", type=int, default=256, help="most new tokens per prompt")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", default="s", help="tiny model size (xs or s)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of generate() and the decoder")
    args = ap.parse_args()
    ex, rat = toy_data(n=200, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = load(toy_model(Path(tmp) / "m", ex["prompt"].to_list() + rat["text"].to_list(), size=args.size,
                                    vocab_size=1024))
        model.eval()
        contexts = prompts_of(tok, args.n, args.prompt_tokens)
        mtext = marker_text("Answer:")  # a random model does not write it: rows run to --new (or EOS)
        mids = tok(mtext, add_special_tokens=False)["input_ids"]
        kw = dict(max_new_tokens=args.new, batch_size=args.batch, greedy=True, temperature=1.0, seed=0, device="cpu")
        decode_to_marker(model, tok, contexts[:2], marker=mtext, marker_ids=mids, **{**kw, "max_new_tokens": 4})
        hf_generate(model, tok, contexts[:2], 4, 2)  # warm-up both
        print(f"model: llama {args.size}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params; "
              f"{len(contexts)} prompts of {args.prompt_tokens} tokens, <= {args.new} new, batch {args.batch}")
        runs = {"hf": [], "dec": []}
        for _ in range(args.repeats):  # alternate, so a burst of load from other processes hits both alike
            runs["hf"].append(timed(lambda: hf_generate(model, tok, contexts, args.new, args.batch)))
            runs["dec"].append(timed(lambda: decode_to_marker(model, tok, contexts, marker=mtext, marker_ids=mids,
                                                              **kw)))
        (hf, w_hf, c_hf), (dec, w_dec, c_dec) = (best(runs["hf"]), best(runs["dec"]))
        n_hf = sum(written(r, tok.eos_token_id) for r in hf)
        n_dec = sum(len(g.ids) - (0 if g.marker_found else len(mids)) for g in dec.gens)
        same = sum(g.ids[:written(r, tok.eos_token_id)] == r[:written(r, tok.eos_token_id)]
                   for g, r in zip(dec.gens, hf))
        print(f"HF generate()       {rates(n_hf, w_hf, c_hf)}")
        print(f"decode_to_marker    {rates(n_dec, w_dec, c_dec)}")
        print(f"decoder / HF: {(n_dec / w_dec) / (n_hf / w_hf):.2f} x wall, "
              f"{(n_dec / c_dec) / (n_hf / c_hf):.2f} x CPU; "
              f"same greedy tokens in {same}/{len(contexts)} rows")
        stop_rates(model, tok, contexts, kw, mids)
        cfg = ScoreConfig(batch_size=min(args.batch, 16), max_new_tokens=64)
        tails = ["Answer:"] * len(contexts)
        _, w_old, c_old = timed(lambda: old_scoring(model, tok, contexts, tails, cfg))
        _, w_new, c_new = timed(lambda: score_contexts(model, tok, contexts, tails, mode="generate", marker="Answer:",
                                                       cfg=cfg, device="cpu"))
        print(f"rationale scoring (<= 64 new, batch {cfg.batch_size}): previous path {w_old:.1f} s "
              f"({c_old:.1f} CPU-s), score_contexts {w_new:.1f} s ({c_new:.1f} CPU-s): "
              f"{w_old / w_new:.2f} x wall, {c_old / c_new:.2f} x CPU")


def stop_rates(model, tok, contexts, kw, mids) -> None:
    """Decoder rate when rows stop at different steps (sampling, stop on a token they write), dropping or
    keeping finished rows. A random model's greedy rows repeat one token, so this part samples."""
    kw = {**kw, "greedy": False}
    pilot = decode_to_marker(model, tok, contexts, marker=tok.decode(mids), marker_ids=mids, **kw).gens
    first: dict[int, list[int]] = collections.defaultdict(list)
    for g in pilot:
        for k, t in enumerate(g.ids):
            if t not in g.ids[:k]:
                first[t].append(k)
    # a token at least half the rows write, first around the middle of the budget: rows stop at spread steps
    common = [t for t, ks in first.items() if len(ks) >= len(pilot) / 2] or list(first)
    stop = [min(common, key=lambda t: abs(sum(first[t]) / len(first[t]) - kw["max_new_tokens"] / 2))]
    for drop in (True, False):
        dec, wall, cpu = timed(lambda: decode_to_marker(model, tok, contexts, marker=tok.decode(stop), marker_ids=stop,
                                                        drop_finished=drop, **kw))
        n = sum(len(g.ids) for g in dec.gens)
        found = sum(g.marker_found for g in dec.gens)
        print(f"sampled, stop on a written token, drop_finished={drop!s:5} {rates(n, wall, cpu)}; "
              f"{found}/{len(contexts)} rows stopped on it")


if __name__ == "__main__":
    main()
