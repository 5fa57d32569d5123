"""The ``rationale-sft`` command: a thin layer of subcommands over the library's stage functions.

Each verb lives in its own module here exposing ``add_parser(subparsers)``; the module registers its
subcommand(s) and sets ``func`` to a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rationale_sft import __version__
from rationale_sft.errors import InputError

# verb -> module under rationale_sft.cli; imported lazily so `--help` stays fast and torch loads on demand.
VERBS = {
    "cohort": "Build a synthetic MEDS cohort or extract a labelled prediction cohort from MEDS data.",
    "baselines": "Fit classical baselines (age+sex LR, LR, LightGBM) and the oracle on a labelled cohort.",
    "render": "Serialize subjects' histories before the prediction time into prompts.",
    "rationales": "Generate teacher rationales and check their quality.",
    "annotate": "Export a blinded expert-annotation packet or import ratings.",
    "validate": "Resolve a config, render every example and check masks and label tokens; loads no weights.",
    "train": "Fine-tune a model in one SFT arm.",
    "score": "Score held-out subjects: P(Yes) at the answer slot.",
    "fewshot": "Score an untrained base model with k in-context demonstrations.",
    "run": "Run the whole experiment grid from one config (resumable).",
    "report": "Write the HTML/markdown report of a finished grid run directory.",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every verb included."""
    parser = argparse.ArgumentParser(
        prog="rationale-sft",
        description="Does supervising a language model with rationales help or hurt disease prediction?")
    parser.add_argument("--version", action="version", version=f"rationale-sft {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, help_text in VERBS.items():
        importlib.import_module(f"rationale_sft.cli.{verb}").add_parser(sub, help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, dispatch, turn user errors into one-line messages and exit code 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options (`run c.yaml --out DIR a.b=1`); anything else is an error
    if extra and isinstance(getattr(args, "overrides", None), list) and all("=" in e and not e.startswith("-")
                                                                             for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (InputError, FileNotFoundError) as exc:
        print(f"rationale-sft {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
