"""``rationale-sft train``: fine-tune a model in one SFT arm (resumes from RUN/checkpoint when re-run)."""

from __future__ import annotations

import argparse

from rationale_sft import config
from rationale_sft.config.train import JobConfig, TrainConfig


def job_arguments(p: argparse.ArgumentParser, *, rationales: bool = True, model_help: str = "") -> None:
    """The inputs every job verb takes: paths as flags (or keys in the YAML), overrides as KEY=VALUE."""
    p.add_argument("--config", default=None, help="Job YAML with keys examples, rationales, model, train, score, fewshot.")
    p.add_argument("--examples", default=None, help="examples.parquet written by `rationale-sft render` (same as examples=...).")
    if rationales:
        p.add_argument("--rationales", default=None, help="rationales.parquet from `rationale-sft rationales generate`.")
    p.add_argument("--model", default=None, help=model_help or "Base model directory or alias (e.g. smollm2-135m-instruct).")
    p.add_argument("--out", required=True, help="Run directory.")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Overrides, e.g. train.arm=freeform train.steps=50.")


def keys_epilog(section: str, cls) -> str:
    """``--help`` listing of a config section's keys with defaults and help."""
    return f"{section} keys (in the job YAML under '{section}:', or {section}.KEY=VALUE):\n" + "\n".join(
        f"  {section}.{k} (default {d}): {h}" for k, d, h in config.describe(cls))


def load_job(args: argparse.Namespace) -> JobConfig:
    """The resolved job: YAML, then the path flags, then KEY=VALUE overrides."""
    flags = [f"{k}={getattr(args, k)}" for k in ("examples", "rationales", "model") if getattr(args, k, None)]
    return config.load(JobConfig, args.config, flags + list(args.overrides))


def add_parser(subparsers, help_text: str) -> None:
    """Register ``train``."""
    p = subparsers.add_parser(
        "train", help=help_text, description=help_text + " Writes RUN/checkpoint/ (model or adapter dir with "
        "tokenizer and training.json), RUN/train_log.parquet (one row per optimizer step), "
        "RUN/train_examples.parquet (prompt/target hashes, token counts) and RUN/train.json. Re-running resumes "
        "from the last checkpoint; a finished run returns at once. See docs/arms.md.",
        epilog=keys_epilog("train", TrainConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    job_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the job, train, print a one-line summary."""
    from rationale_sft.train.loop import train

    job = load_job(args)
    out = train(job.train, args.out, job.examples, job.rationales or None, job.model)
    print(f"{args.out}: arm {job.train.arm}, {out['steps']} steps on {out['n_sequences']} sequences "
          f"({out['n_target_tokens']} target tokens, {out['n_truncated']} truncated), final loss "
          f"{out['final_loss']:.4f}, {out['tokens_per_s']:.0f} tokens/s")
    return 0
