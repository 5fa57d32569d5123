"""LoRA adapters (peft): wrap a model after checking its target layers exist, save or merge afterwards.

>>> default_targets("gpt2"), default_targets("qwen2")
(('c_attn', 'attn.c_proj'), ('q_proj', 'k_proj', 'v_proj', 'o_proj'))
>>> missing_targets(("q_proj", "w_up"), ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj"])
['w_up']
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from rationale_sft.errors import InputError

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
# gpt2 packs q, k, v into one Conv1D (c_attn); "attn.c_proj" keeps the MLP's c_proj out.
DEFAULT_TARGETS = {"gpt2": ("c_attn", "attn.c_proj")}


def default_targets(model_type: str) -> tuple[str, ...]:
    """The attention projections of an architecture: the layers adapted when none are configured."""
    return DEFAULT_TARGETS.get(model_type, ATTENTION)


def linear_names(model) -> list[str]:
    """Full names of the model's linear layers (``nn.Linear`` and gpt2's ``Conv1D``), the adaptable ones."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return [name for name, mod in model.named_modules() if isinstance(mod, (torch.nn.Linear, Conv1D))]


def missing_targets(targets: Sequence[str], names: Iterable[str]) -> list[str]:
    """Targets that match no layer name (peft matches a target to a name equal to it or ending in .target)."""
    names = list(names)
    return [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]


def apply_lora(model, lora_cfg):
    """``model`` wrapped with LoRA adapters per ``lora_cfg`` (a ``LoraConfig`` section); only adapters train."""
    from peft import LoraConfig, get_peft_model

    model_type = getattr(model.config, "model_type", "")
    targets = tuple(lora_cfg.target_modules) or default_targets(model_type)
    names = linear_names(model)
    missing = missing_targets(targets, names)
    if missing:
        short = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise InputError(f"lora.target_modules {missing} match no linear layer of this {model_type or 'model'}; "
                         f"its linear layers are named {', '.join(short)}; set lora.target_modules to some of them")
    peft_cfg = LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                          target_modules=list(targets), bias="none", task_type="CAUSAL_LM",
                          fan_in_fan_out=model_type == "gpt2")  # gpt2's Conv1D stores weights transposed
    with peft_compat():
        return get_peft_model(model, peft_cfg)


@contextlib.contextmanager
def peft_compat() -> Iterator[None]:
    """Wrap a model with peft without its one known false alarm: peft 0.21 asks every model
    ``is_gradient_checkpointing``, which transformers 5 deprecated (FutureWarning) in favour of
    ``is_activation_checkpointing``. Only that message is ignored, only inside this block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def merge_or_save(model, out_dir: str | Path, tokenizer=None, merge: bool = False) -> Path:
    """Save a LoRA model as an adapter dir (default) or, with ``merge``, as a full model with merged weights.

    An adapter dir records its base model's path; ``rationale_sft.models.load`` follows it.
    """
    out_dir = Path(out_dir)
    is_peft = hasattr(model, "peft_config")
    to_save = model.merge_and_unload() if (merge and is_peft) else model
    to_save.save_pretrained(str(out_dir))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))
    return out_dir
