"""Serialization of a subject's history before the prediction time into a versioned, hashed prompt.

Public API: ``render`` (the stage), ``render_examples``, ``render_parts`` + ``PromptParts.from_row`` +
``assemble`` (token-budgeted assembly for the training stage), the templates, and the answer slot's marker (from ``rationale_sft.answer``).
"""

from rationale_sft.answer import ANSWER_MARKER, PROMPT_END
from rationale_sft.render.assemble import PromptParts, assemble, history_text, whitespace_tokens
from rationale_sft.render.stage import EXAMPLES, read_codes, render, render_examples, render_parts
from rationale_sft.render.templates import TEMPLATES, Template, check_template, get_template, template_hash

__all__ = ["PromptParts", "assemble", "history_text", "whitespace_tokens", "ANSWER_MARKER", "PROMPT_END", "EXAMPLES", "read_codes", "render", "render_examples", "render_parts",
           "TEMPLATES", "Template", "check_template", "get_template", "template_hash"]
