"""``rationale-sft annotate export|import``."""

from rationale_sft.cli._groups import add_group


def add_parser(subparsers, help_text: str) -> None:
    """Register ``annotate`` and its actions."""
    add_group(subparsers, "annotate", help_text, {"export": "annotate_export", "import": "annotate_import"})
