"""Teacher backend for a local transformers model: batched, left-padded generation on one device.

The model is opened with ``rationale_sft.models.load`` (a local HF dir, a peft adapter dir, a cached hub id
or an alias such as ``smollm2-135m-instruct``). The tokenizer's chat template is used when it has one; otherwise the
system and user messages are joined as plain text. Decoding is greedy at temperature 0; otherwise sampled,
with the torch seed of each batch derived from the master seed and the batch's first cache key (the seed
is recorded with every rationale; sampled output depends on the batch composition, greedy output does not).
A reply without a conclusion line fails its item (reported, never dropped).
"""

from __future__ import annotations

import time
from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.errors import InputError
from rationale_sft.rationales.generate import Emit, Item, Outcome, parse_item_reply
from rationale_sft.rationales.specs import teacher_messages
from rationale_sft.seeding import derive_seed


def run(cfg: TeacherConfig, items: list[Item], emit: Emit, **_: object) -> dict:
    """Generate every item in batches of ``cfg.batch_size``, emitting outcomes batch by batch."""
    if cfg.cpu_threads:
        import torch

        torch.set_num_threads(cfg.cpu_threads)
    model, tokenizer = load(cfg.model, cfg.device)
    items = sorted(items, key=lambda i: len(i.prompt))  # similar lengths per batch: less padding to compute
    n_tokens, seconds = 0, 0.0
    for start in range(0, len(items), cfg.batch_size):
        batch = items[start:start + cfg.batch_size]
        chats = [teacher_messages(i.prompt, i.style, i.mode, i.teacher_label) for i in batch]
        seed = derive_seed(cfg.seed, f"hf/{batch[0].key}") if cfg.temperature > 0 else None
        t0 = time.perf_counter()
        texts, counts = generate_texts(model, tokenizer, chats, cfg.max_new_tokens, cfg.temperature, seed or 0)
        seconds += time.perf_counter() - t0
        n_tokens += sum(counts)
        for item, text, count in zip(batch, texts, counts):
            emit(_outcome(item, text, count, seed))
    return {"generated_tokens": n_tokens, "generate_seconds": round(seconds, 3),
            "tokens_per_s": round(n_tokens / max(seconds, 1e-9), 1)}


def _outcome(item: Item, text: str, n_tokens: int, seed: int | None) -> Outcome:
    try:
        return Outcome(item, parse_item_reply(item, text), text, None, 1, n_tokens, seed)
    except InputError as exc:
        return Outcome(item, None, text, str(exc), 1, n_tokens, seed)


def load(name: str, device: str = "cpu"):
    """Model (eval mode, on ``device``) and tokenizer (left padding, a pad token) for a dir, adapter or alias."""
    from rationale_sft.models import load as load_model

    model, tokenizer = load_model(name)
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def render_chats(tokenizer, chats: list[list[dict]]) -> list[str]:
    """Prompt strings: the chat template with a generation prompt, or plain text without a template."""
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    return ["\n\n".join(m["content"] for m in chat) + "\n\n" for chat in chats]


def generate_texts(model, tokenizer, chats: list[list[dict]], max_new_tokens: int, temperature: float,
                   seed: int) -> tuple[list[str], list[int]]:
    """Generate one reply per chat; return the decoded replies and their generated-token counts."""
    import torch

    prompts = render_chats(tokenizer, chats)
    templated = bool(getattr(tokenizer, "chat_template", None))
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=not templated)
    enc = enc.to(model.device)
    sample = temperature > 0
    kwargs = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if sample else \
        {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}
    if sample:
        torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             **kwargs)
    new = out[:, enc["input_ids"].shape[1]:]
    return tokenizer.batch_decode(new, skip_special_tokens=True), _counts(new, tokenizer)


def _counts(new, tokenizer) -> list[int]:
    """Generated tokens per row, up to and including the first end-of-sequence token."""
    eos = tokenizer.eos_token_id
    counts = []
    for row in new.tolist():
        counts.append(row.index(eos) + 1 if eos in row else len(row))
    return counts
