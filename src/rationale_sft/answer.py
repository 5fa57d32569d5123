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


def wrap_prompt(tokenizer, prompt: str, chat: bool, system: str | None = "") -> str:
    """The text before the answer: the prompt itself, or a chat user turn plus the assistant header.

    ``system`` is the chat system prompt (see ``system_turn``): '' adds none, a text adds that system turn,
    None leaves the template's own choice (SmolLM2 and Qwen2 add a default one).
    """
    if not chat:
        return prompt
    messages = system_turn(tokenizer, system) + [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def system_turn(tokenizer, system: str | None) -> list[dict]:
    """The messages a chat starts with for a system prompt setting.

    '' means no system prompt. A template that adds a default system turn when none is given (SmolLM2's
    "You are a helpful AI assistant named SmolLM, ...") gets an empty one instead, so nothing is added
    silently; a template without a default gets no system turn. A text is that system turn; None leaves the
    template's choice (no message passed).
    """
    if system is None:
        return []
    if system:
        if not _accepts_system(tokenizer):
            raise InputError(f"the tokenizer's chat template refuses a system turn, so system prompt {system!r} "
                             "cannot be used; set the system prompt to '' (none)")
        return [{"role": "system", "content": system}]
    return [{"role": "system", "content": ""}] if _adds_default_system(tokenizer) else []


_PROBE = [{"role": "user", "content": "x"}]


def _adds_default_system(tokenizer) -> bool:
    """Whether the chat template writes a system turn of its own when the messages hold none."""
    key = ("default", tokenizer.chat_template)
    if key not in _TEMPLATE_FACTS:
        bare = tokenizer.apply_chat_template(_PROBE, tokenize=False)
        empty = _render_or_none(tokenizer, [{"role": "system", "content": ""}] + _PROBE)
        _TEMPLATE_FACTS[key] = empty is not None and len(bare) > len(empty)
    return _TEMPLATE_FACTS[key]


def _accepts_system(tokenizer) -> bool:
    """Whether the chat template renders a system turn at all (Gemma's, for one, raises)."""
    key = ("system", tokenizer.chat_template)
    if key not in _TEMPLATE_FACTS:
        _TEMPLATE_FACTS[key] = _render_or_none(tokenizer, [{"role": "system", "content": "s"}] + _PROBE) is not None
    return _TEMPLATE_FACTS[key]


def _render_or_none(tokenizer, messages: list[dict]) -> str | None:
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False)
    except TemplateError:  # also what a template's own raise_exception("System role not supported") raises
        return None


_TEMPLATE_FACTS: dict[tuple[str, str], bool] = {}
"Per chat template text: whether it adds a default system turn, whether it accepts one."


def prompt_ids(tokenizer, text: str, chat: bool) -> list[int]:
    """Token ids of a (wrapped) prompt; a chat template already holds its special tokens."""
    return list(tokenizer(text, add_special_tokens=not chat)["input_ids"])
