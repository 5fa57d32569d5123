"""The answer slot in one place: the marker a prompt ends with, the two label words, the text that joins a
target's segments, and how a prompt is wrapped for a chat model.

A rendered prompt ends with ``PROMPT_END`` (a new line and ``ANSWER_MARKER``) and nothing after it; the label
word follows with one space (``" Yes"`` / ``" No"``), so the answer slot is the first token after the prompt.
Prompts (render), teacher specs and quality checks (rationales), SFT targets (train), scoring (score,
fewshot), tokenizers and pretraining (models) and the configs that name the marker all read these from
here; this module imports none of them.

>>> PROMPT_END, LABEL_WORDS, SPACED_LABEL_WORDS
('\\nAnswer:', ('Yes', 'No'), (' Yes', ' No'))
>>> label_word(True), label_word(False)
('Yes', 'No')
"""

from __future__ import annotations

from rationale_sft.errors import InputError

ANSWER_MARKER = "Answer:"
"""The marker after which the label word is written; a prompt ends with it."""

PROMPT_END = "\n" + ANSWER_MARKER
"""The exact suffix of every rendered prompt."""

LABEL_WORDS = ("Yes", "No")
"""The two answer words, in the order (positive, negative)."""

SPACED_LABEL_WORDS = tuple(" " + w for w in LABEL_WORDS)
"""The label words as they follow the answer marker (leading space), the tokens scoring reads."""


def label_word(label: bool) -> str:
    """The answer word of a label."""
    return LABEL_WORDS[0] if label else LABEL_WORDS[1]


def joiner(prev: str, kind: str) -> str:
    """Text placed between what precedes a segment and the segment.

    >>> joiner("...\\nAnswer:", "label"), joiner("assistant\\n", "label"), joiner(" Yes", "rationale")
    (' ', '', '\\n')
    >>> joiner("rationale text.", "marker"), joiner("", "rationale")
    ('\\n', '')
    """
    if kind == "marker" or (kind == "rationale" and prev.endswith(LABEL_WORDS)):
        return "\n"
    return "" if not prev or prev[-1].isspace() else " "


def uses_chat(tokenizer, mode: str) -> bool:
    """Whether prompts are wrapped in the tokenizer's chat template (mode: auto, on, off)."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if mode == "on" and not has:
        raise InputError("chat_template=on but the tokenizer has no chat template; use chat_template=auto or off")
    return has and mode != "off"


def wrap_prompt(tokenizer, prompt: str, chat: bool) -> str:
    """The text before the answer: the prompt itself, or a chat user turn plus the assistant header."""
    if not chat:
        return prompt
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def prompt_ids(tokenizer, text: str, chat: bool) -> list[int]:
    """Token ids of a (wrapped) prompt; a chat template already holds its special tokens."""
    return list(tokenizer(text, add_special_tokens=not chat)["input_ids"])
