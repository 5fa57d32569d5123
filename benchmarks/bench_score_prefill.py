"""Scoring efficiency: K samples with and without a shared prefill, float32 against bfloat16, batch sizes; one run.

Prints, on one model (a random tiny llama unless ``--model``) and the same toy prompts (``bench_decode.prompts_of``):

* K sampled rationales per prompt decoded from one prefill per prompt (``decode_to_marker(repeats=K)``, what
  ``score.n_samples`` runs) against the previous path (every sample prefills its own copy of the prompt):
  new tokens/s, prompt tokens prefilled, and their ratio;
* greedy rationale decoding (``decode_to_marker``, P(Yes) after the marker) and the direct slot
  (``slot_scores``) with float32 weights, bfloat16 weights (``load_scorer``: output layer in float32) and
  float32 weights under bf16 autocast, with the largest |P(Yes) difference| against float32 (on a random
  model a check that scores stay sane, not of their accuracy);
* the direct slot and greedy decoding at several batch sizes.

A random model never writes the marker, so every row runs to ``--new`` tokens (a real model may stop early).
Wall seconds are the best of ``--repeats`` (the paths alternate, so a burst of load from other processes hits
both alike).

    .venv/bin/python benchmarks/bench_score_prefill.py [--n 16] [--prompt-tokens 300] [--new 32] [--k 4] [--size s]
        [--batch 8] [--batches 1,4,8,16,32] [--repeats 2] [--threads 0] [--model DIR] [--parts prefill,dtype,batch]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_decode import prompts_of  # the same toy contexts as the decoder benchmark
from rationale_sft.score.decode import decode_to_marker
from rationale_sft.score.stage import load_scorer, marker_text
from rationale_sft.score.slot import candidate_ids, slot_scores
from rationale_sft.train.toy import toy_data, toy_model


def best(fn, repeats: int) -> tuple:
    """The first output of ``repeats`` calls of ``fn`` and the least wall and CPU seconds among them."""
    out, wall, cpu = None, float("inf"), float("inf")
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        res = fn()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
        out = res if out is None else out
    return out, wall, cpu


def shared_prefill(model, tok, contexts, args) -> None:
    mtext = marker_text("Answer:")
    mids = tok(mtext, add_special_tokens=False)["input_ids"]
    k = args.k
    kw = dict(marker=mtext, marker_ids=mids, max_new_tokens=args.new, batch_size=args.batch, greedy=False,
              temperature=1.0, seed=0, device="cpu", row_seeds=list(range(len(contexts) * k)))
    each = [c for c in contexts for _ in range(k)]
    runs = {"shared": [], "each": []}
    for _ in range(args.repeats):
        runs["each"].append(best(lambda: decode_to_marker(model, tok, each, **kw), 1))
        runs["shared"].append(best(lambda: decode_to_marker(model, tok, contexts, repeats=k, **kw), 1))
    prompt = sum(map(len, contexts))
    line = {}
    for name, prefilled in (("each", prompt * k), ("shared", prompt)):
        dec = runs[name][0][0]
        wall, cpu = min(r[1] for r in runs[name]), min(r[2] for r in runs[name])
        new = sum(len(g.ids) for g in dec.gens)
        line[name] = (dec, new / wall, new / cpu, wall)
        print(f"K={k} samples, {'one prefill per prompt' if name == 'shared' else 'a prefill per sample  '}: "
              f"{new / wall:7.0f} new tok/s ({new / cpu:7.0f} per CPU-s), {prefilled} prompt tokens prefilled, "
              f"{prompt * k / wall:7.0f} prompt tok/s of the scored rows, {wall:.2f} s")
    same = line["shared"][0].gens == line["each"][0].gens
    print(f"shared / per-sample prefill: {line['shared'][1] / line['each'][1]:.2f}x new tok/s wall, "
          f"{line['shared'][2] / line['each'][2]:.2f}x per CPU-s; same sampled tokens: {same}")


def dtypes(model_dir, tok, contexts, args) -> None:
    tails = ["Answer:"] * len(contexts)
    models = {"float32": load_scorer(model_dir, "float32", "cpu")[0], "bfloat16": load_scorer(model_dir, "bfloat16",
                                                                                                "cpu")[0]}
    prompt = sum(map(len, contexts))

    mtext = marker_text("Answer:")
    mids = tok(mtext, add_special_tokens=False)["input_ids"]
    words = [c[0] for c in candidate_ids(tok, "Answer:")]

    def gen(name):  # the decoder runs its own autocast (an outer one would be switched off inside it)
        dec = decode_to_marker(models["float32" if name == "autocast" else name], tok, contexts, marker=mtext,
                               marker_ids=mids, max_new_tokens=args.new, batch_size=args.batch, greedy=True,
                               temperature=1.0, seed=0, device="cpu", slot_ids=words, bf16=name == "autocast")
        p = np.exp(dec.after.logp)
        return {"p_yes": p[:, 0] / p.sum(1), "n_generated_tokens": [len(g.ids) for g in dec.gens]}

    def direct(name):
        model = models["float32" if name == "autocast" else name]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "autocast"):
            return slot_scores(model, tok, contexts, tails, batch_size=args.batch, device="cpu")

    res = {}
    for _ in range(args.repeats):
        for name in ("float32", "bfloat16", "autocast"):
            for part, fn in (("gen", gen), ("direct", direct)):
                out = best(lambda: fn(name), 1)
                have = res.get((name, part))
                res[(name, part)] = out if have is None else (have[0], min(have[1], out[1]), min(have[2], out[2]))
    for name in ("float32", "bfloat16", "autocast"):
        g, d = res[(name, "gen")], res[(name, "direct")]
        new = sum(g[0]["n_generated_tokens"])
        diff = np.abs(np.asarray(g[0]["p_yes"]) - np.asarray(res[("float32", "gen")][0]["p_yes"])).max()
        ddiff = np.abs(d[0]["p_yes"] - res[("float32", "direct")][0]["p_yes"]).max()
        print(f"{name:9} greedy decoding {new / g[1]:7.0f} new tok/s ({g[1]:.2f} s); direct slot {prompt / d[1]:8.0f} "
              f"prompt tok/s ({d[1]:.2f} s); max |dP(Yes)| vs float32: after {diff:.2e}, direct {ddiff:.2e}; "
              f"speed vs float32: {res[('float32', 'gen')][1] / g[1]:.2f}x gen, "
              f"{res[('float32', 'direct')][1] / d[1]:.2f}x direct")


def batches(model, tok, contexts, args) -> None:
    tails = ["Answer:"] * len(contexts)
    mtext = marker_text("Answer:")
    mids = tok(mtext, add_special_tokens=False)["input_ids"]
    prompt = sum(map(len, contexts))
    for bs in [int(b) for b in args.batches.split(",")]:
        _, dw, _ = best(lambda: slot_scores(model, tok, contexts, tails, batch_size=bs, device="cpu"), args.repeats)
        dec, gw, _ = best(lambda: decode_to_marker(model, tok, contexts, marker=mtext, marker_ids=mids,
                                                   max_new_tokens=args.new, batch_size=bs, greedy=True,
                                                   temperature=1.0, seed=0, device="cpu"), args.repeats)
        new = sum(len(g.ids) for g in dec.gens)
        print(f"batch {bs:3}: direct slot {prompt / dw:8.0f} prompt tok/s ({dw:.2f} s); greedy decode "
              f"{new / gw:7.0f} new tok/s ({gw:.2f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="prompts")
    ap.add_argument("--prompt-tokens", type=int, default=300)
    ap.add_argument("--new", type=int, default=32, help="new tokens per rationale")
    ap.add_argument("--k", type=int, default=4, help="sampled rationales per prompt")
    ap.add_argument("--size", default="s", help="tiny model size (xs or s)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", default="1,4,8,16,32", help="batch sizes to compare ('' = skip)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--parts", default="prefill,dtype,batch", help="which comparisons to run")
    ap.add_argument("--model", default="", help="a model dir or alias (e.g. smollm2-135m-instruct) instead of "
                    "the random tiny llama")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ex, rat = toy_data(n=200, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or toy_model(Path(tmp) / "m", ex["prompt"].to_list() + rat["text"].to_list(),
                                       size=args.size, vocab_size=1024)
        model, tok = load_scorer(path, "float32", "cpu")
        contexts = prompts_of(tok, args.n, args.prompt_tokens)
        name = args.model or f"random llama {args.size}"
        print(f"{name}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params; {args.n} prompts "
              f"of {args.prompt_tokens} tokens, {args.new} new tokens per rationale, batch {args.batch}, "
              f"torch threads {torch.get_num_threads()}, best of {args.repeats}")
        slot_scores(model, tok, contexts[:2], ["Answer:"] * 2, batch_size=2, device="cpu")  # warm-up
        parts = args.parts.split(",")
        if "prefill" in parts:
            shared_prefill(model, tok, contexts, args)
        if "dtype" in parts:
            dtypes(path, tok, contexts, args)
        if "batch" in parts and args.batches:
            batches(model, tok, contexts, args)


if __name__ == "__main__":
    main()
