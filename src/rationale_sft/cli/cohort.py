"""``rationale-sft cohort synth|extract``."""

from rationale_sft.cli._groups import add_group


def add_parser(subparsers, help_text: str) -> None:
    """Register ``cohort`` and its actions."""
    add_group(subparsers, "cohort", help_text, {"synth": "cohort_synth", "extract": "cohort_extract"})
