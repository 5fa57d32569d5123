"""Verb groups whose subcommands live in separate modules (``cohort synth``, ``rationales check``, ...)."""

from __future__ import annotations

import importlib


def add_group(subparsers, verb: str, help_text: str, children: dict[str, str]) -> None:
    """Register ``verb`` with one sub-subcommand per child module ``rationale_sft.cli.<module>``."""
    parser = subparsers.add_parser(verb, help=help_text, description=help_text)
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    for module_name in children.values():
        importlib.import_module(f"rationale_sft.cli.{module_name}").add_parser(sub)
