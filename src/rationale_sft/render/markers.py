"""The answer slot shared by prompts, teacher specs and SFT targets: one marker, two label words.

A rendered prompt ends with ``ANSWER_MARKER`` and nothing after it; the label word follows directly, with
its leading space (`` Yes`` / `` No``), so the answer slot is the first token after the prompt.

>>> PROMPT_END, LABEL_WORDS
('\\nAnswer:', {True: ' Yes', False: ' No'})
>>> label_word(True), label_word(False)
(' Yes', ' No')
"""

from __future__ import annotations

ANSWER_MARKER = "Answer:"
"""The marker after which the label word is written; a prompt ends with it."""

PROMPT_END = "\n" + ANSWER_MARKER
"""The exact suffix of every rendered prompt."""

LABEL_WORDS = {True: " Yes", False: " No"}
"""Label words that follow the answer marker directly (leading space included)."""


def label_word(label: bool) -> str:
    """The label word written right after the answer marker."""
    return LABEL_WORDS[bool(label)]
