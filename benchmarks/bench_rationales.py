"""Teacher generation rates: knowledge items/s, openai items/s by concurrency, hf tokens/s (tiny, SmolLM2).

Prints figures; asserts nothing. The machine is shared, so compare ratios measured within one run.
Usage: python benchmarks/bench_rationales.py [--subjects 300] [--smollm2-items 8] [--no-smollm2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl

from rationale_sft.cli import main as cli
from rationale_sft.config import build
from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.rationales.generate import generate
from rationale_sft.rundir import read_json

LATENCY_S = 0.05


def cohort(root: Path, n: int) -> Path:
    """Synthetic cohort -> labels -> examples.parquet."""
    cli(["cohort", "synth", "--out", str(root / "meds"), "--n-subjects", str(n), "calibration_n=2000"])
    cli(["cohort", "extract", "--meds", str(root / "meds"), "--task", "configs/tasks/adrd_5y.yaml",
         "--out", str(root / "labels.parquet")])
    cli(["render", "--meds", str(root / "meds"), "--labels", str(root / "labels.parquet"), "--out", str(root / "r")])
    return root / "r" / "examples.parquet"


def tiny_model(out: Path, corpus: list[str]) -> Path:
    """A random xs Llama with a tokenizer trained on the prompts (the project's own builders)."""
    from rationale_sft.models.families import build_model
    from rationale_sft.models.tokenizer import train_tokenizer

    tok = train_tokenizer(corpus, 1000, out)
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tok.save_pretrained(out)
    build_model("llama", "xs", tok, seed=0).save_pretrained(out)
    return out


class _StubHandler(BaseHTTPRequestHandler):
    """Answers every chat completion after LATENCY_S with a well-formed blind rationale."""

    def do_POST(self):  # noqa: N802 (http.server naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(LATENCY_S)
        text = "Age is the main factor here.\nConclusion: unlikely\nRisk: 0.05"
        data = json.dumps({"choices": [{"message": {"content": text}}], "usage": {"completion_tokens": 14}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def openai_rates(examples: Path, root: Path) -> None:
    """Items/s against a local stub server with fixed latency, by concurrency (the pool's scaling)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        for conc in (1, 8):
            cfg = build(TeacherConfig, {"backend": "openai", "model": "stub", "mode": "blind", "styles": ["stepwise"],
                                        "base_url": f"http://127.0.0.1:{httpd.server_address[1]}/v1",
                                        "concurrency": conc})
            run(f"openai stub {LATENCY_S * 1000:.0f} ms, conc={conc}", cfg, examples, root / f"openai{conc}")
    finally:
        httpd.shutdown()


def run(name: str, cfg: TeacherConfig, examples: Path, out: Path, meds: Path | None = None) -> dict:
    t0 = time.perf_counter()
    generate(cfg, examples, out, meds=meds)
    wall = time.perf_counter() - t0
    stats = read_json(out / "manifest.json")["rationales"]
    items = stats["generated"] + stats["failed"]
    line = f"{name:<28} {items:>5} items  {items / wall:8.1f} items/s (stage wall {wall:6.1f} s)"
    if "tokens_per_s" in stats:
        line += f"  {stats['generated_tokens']:>6} tokens  {stats['tokens_per_s']:8.1f} tokens/s"
    print(line, flush=True)
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--subjects", type=int, default=300)
    ap.add_argument("--smollm2-items", type=int, default=8)
    ap.add_argument("--no-smollm2", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_rationales_"))
    examples = cohort(root, args.subjects)
    run("knowledge (2 styles)", build(TeacherConfig, {}), examples, root / "k", meds=root / "meds")
    small = root / "small.parquet"
    pl.read_parquet(examples).filter(pl.col("split") == "train").head(16).write_parquet(small)
    mid = root / "mid.parquet"
    pl.read_parquet(examples).filter(pl.col("split") == "train").head(80).write_parquet(mid)
    openai_rates(mid, root)
    model = tiny_model(root / "tiny", pl.read_parquet(examples)["prompt"].to_list())
    for bs in (1, 8):
        cfg = build(TeacherConfig, {"backend": "hf", "model": str(model), "styles": ["stepwise"], "batch_size": bs,
                                    "max_new_tokens": 64, "allow_failures": True})
        run(f"hf tiny xs batch={bs}", cfg, small, root / f"tiny{bs}")
    if not args.no_smollm2:
        few = root / "few.parquet"
        pl.read_parquet(small).head(args.smollm2_items).write_parquet(few)
        cfg = build(TeacherConfig, {"backend": "hf", "model": "smollm2-135m-instruct", "styles": ["stepwise"],
                                    "mode": "blind", "batch_size": 4, "max_new_tokens": 160, "allow_failures": True,
                                    "cpu_threads": 1})
        stats = run("hf smollm2-135m batch=4", cfg, few, root / "smol")
        print(f"  smollm2 replies with a parseable conclusion: {stats['generated']} of "
              f"{stats['generated'] + stats['failed']}")


if __name__ == "__main__":
    main()
