"""``rationale-sft rationales generate|check``."""

from rationale_sft.cli._groups import add_group


def add_parser(subparsers, help_text: str) -> None:
    """Register ``rationales`` and its actions."""
    add_group(subparsers, "rationales", help_text, {"generate": "rationales_generate",
                                                    "check": "rationales_check"})
