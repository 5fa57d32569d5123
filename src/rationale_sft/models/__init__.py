"""Language models: BPE tokenizers, tiny model families, pretraining, real checkpoints and LoRA.

``load(model_dir)`` is the one way stages open a model: a Hugging Face model dir, a peft adapter dir
(its ``adapter_config.json`` names the base), a hub id already in the local cache, or an alias such as
``smollm2-135m-instruct``.
"""

from __future__ import annotations

import json
from pathlib import Path

from rationale_sft.errors import InputError
from rationale_sft.models import hub

DTYPES = ("float32", "bfloat16", "float16")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load(model_dir: str | Path, dtype=None):
    """Load ``(model, tokenizer)`` from a model dir, adapter dir, cached hub id or alias (float32 default)."""
    from transformers import AutoModelForCausalLM

    path = hub.resolve(model_dir)
    torch_dtype = _dtype(dtype)
    if (path / "adapter_config.json").is_file():
        return _load_adapter(path, torch_dtype)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
    return model, load_tokenizer(path)


def context_length(config) -> int | None:
    """A model config's context length in tokens (llama-style ``max_position_embeddings``, gpt2's
    ``n_positions``), or None when it states none."""
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def _load_adapter(path: Path, torch_dtype):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from rationale_sft.models.lora import peft_compat

    base = adapter_base(path)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch_dtype)
    with peft_compat():
        model = PeftModel.from_pretrained(model, str(path))
    has_tokenizer = any((path / f).is_file() for f in TOKENIZER_FILES)
    return model, load_tokenizer(path if has_tokenizer else base)


def adapter_base(path: str | Path) -> Path:
    """The resolved base model dir named by an adapter dir (relative names resolve from the adapter dir)."""
    path = Path(path)
    name = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not name:
        raise InputError(f"{path / 'adapter_config.json'} names no base_model_name_or_path; "
                         f"save the adapter from a model loaded with rationale_sft.models.load")
    relative = path / name
    return hub.resolve(relative if not Path(name).is_absolute() and relative.exists() else name)


def load_tokenizer(path: str | Path):
    """The tokenizer saved in a model (or tokenizer) dir, as the model was trained with it."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise InputError(f"model dir {path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                         f"save the tokenizer beside the model with tokenizer.save_pretrained(dir)")
    cfg = path / "tokenizer_config.json"
    declared = json.loads(cfg.read_text()).get("tokenizer_class") if cfg.is_file() else None
    if declared in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        # Our own tokenizers: AutoTokenizer would pick the architecture's class for some model types
        # (qwen2 -> Qwen2Tokenizer, which adds an <|endoftext|> token the model's embeddings lack).
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))


def _dtype(dtype):
    """torch dtype from None (float32), a torch dtype, or its name.

    >>> _dtype(None), _dtype("bfloat16")
    (torch.float32, torch.bfloat16)
    >>> _dtype("int8")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: dtype 'int8' is not supported; use one of float32, bfloat16, float16
    """
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype) not in DTYPES:
        raise InputError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    return getattr(torch, str(dtype))


__all__ = ["load", "load_tokenizer", "adapter_base"]
