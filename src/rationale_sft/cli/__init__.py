"""The ``rationale-sft`` command: a thin layer of subcommands over the library's stage functions.

Each verb lives in its own module here exposing ``add_parser(subparsers)``; the module registers its
subcommand(s) and sets ``func`` to a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
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
    "validate": "Check a job config (every example: masks, label tokens) or a grid config (every job of its plan) "
                "before compute; loads no weights.",
    "train": "Fine-tune a model in one SFT arm.",
    "score": "Score held-out subjects: P(Yes) at the answer slot.",
    "fewshot": "Score an untrained base model with k in-context demonstrations.",
    "run": "Run the whole experiment grid from one config (resumable).",
    "report": "Write the HTML/markdown report of a finished grid run directory.",
}


OUTPUT_ARGS = ("out", "run_dir")
"Arguments that name where a verb writes (report writes under RUN_DIR)."
DISK_FIXES = {
    errno.ENOSPC: "free space on that disk, or write to another disk (--out; for report, a copy of RUN_DIR)",
    errno.EDQUOT: "free space within your quota, or write to another disk (--out; for report, a copy of RUN_DIR)",
    errno.EROFS: "that disk is read-only: write to a writable one (--out; for report, a copy of RUN_DIR)",
    errno.EACCES: "make it writable, or write elsewhere (--out; for report, a copy of RUN_DIR)",
    errno.EPERM: "make it writable, or write elsewhere (--out; for report, a copy of RUN_DIR)",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every verb included."""
    parser = argparse.ArgumentParser(
        prog="rationale-sft",
        description="Does supervising a language model with rationales help or hurt disease prediction?")
    parser.add_argument("--version", action="version", version=f"rationale-sft {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show the libraries' own warnings and progress bars (transformers, huggingface_hub: "
                             "'Loading weights', 'Writing model shards'); off by default")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, help_text in VERBS.items():
        importlib.import_module(f"rationale_sft.cli.{verb}").add_parser(sub, help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, dispatch, turn user errors into one-line messages and exit code 2.

    Ctrl-C exits with 130 and one line; a write refused by the disk (full, read-only, no permission) is a
    one-line error naming the file or output directory. Stages write atomically and mark themselves
    done last, so neither leaves a partial artifact that counts as finished.
    """
    try:
        return _dispatch(build_parser(), argv)
    except KeyboardInterrupt:
        verb = next((a for a in (sys.argv[1:] if argv is None else argv) if a in VERBS), "")
        print(f"rationale-sft{' ' + verb if verb else ''}: interrupted (Ctrl-C); nothing unfinished was marked "
              "done: run the same command again to resume", file=sys.stderr)
        return 130


def _dispatch(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
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
    if not args.verbose:
        quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except (InputError, FileNotFoundError) as exc:
        print(f"rationale-sft {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"rationale-sft {args.verb}: error: {disk_error(exc, args)}", file=sys.stderr)
        return 2


QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
"Environment that silences the libraries' warnings and progress bars (a value already set wins)."


def quiet_libraries() -> None:
    """Silence transformers' warnings and its weight loading/saving bars, and huggingface_hub's bars, in this
    process and in the workers it starts (they inherit the environment); errors still show."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if "transformers" in sys.modules:  # already imported (an in-process caller): it read the environment then
        from transformers.utils import logging as hf_logging

        if os.environ["TRANSFORMERS_VERBOSITY"] == QUIET_ENV["TRANSFORMERS_VERBOSITY"]:
            hf_logging.set_verbosity_error()
        if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == QUIET_ENV["HF_HUB_DISABLE_PROGRESS_BARS"]:
            hf_logging.disable_progress_bar()


def disk_error(exc: OSError, args: argparse.Namespace) -> str:
    """One line for an OSError: the file (or the output directory when the OS did not say), why, the fix.

    >>> disk_error(OSError(errno.EROFS, "Read-only file system", "runs/x/a.json"), argparse.Namespace(out="runs/x"))
    'cannot write to runs/x/a.json: Read-only file system; that disk is read-only: write to a writable one (--out; for report, a copy of RUN_DIR)'
    """
    where = _published_name(exc.filename) if exc.filename else next(
        (getattr(args, k) for k in OUTPUT_ARGS if getattr(args, k, None)), None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    fix = DISK_FIXES.get(exc.errno)
    if fix is None:
        return f"{where}: {reason}" if where else reason
    return f"cannot write {'to' if exc.filename else 'under'} {where}: {reason}; {fix}"


def _published_name(path: str | bytes) -> str:
    """The file an atomic write was producing, for its temporary name (``.NAME.XXXXXXXX.tmp`` -> ``NAME``).

    >>> _published_name("run/.scores.parquet.k2j4_x9a.tmp"), _published_name("run/scores.parquet")
    ('run/scores.parquet', 'run/scores.parquet')
    """
    path = os.fsdecode(path)
    head, name = os.path.split(path)
    match = re.fullmatch(r"\.(.+)\.[^.]+\.tmp", name)
    return os.path.join(head, match.group(1)) if match else path


if __name__ == "__main__":
    sys.exit(main())
