"""Checkpoint resolution: clear errors for unusable paths and ids; the bundled SmolLM2 GGUF converts and runs."""

import json
import os

import pytest
import torch

from rationale_sft.errors import InputError
from rationale_sft.models import hub, load
from rationale_sft.models.tokenizer import label_token_ids


def test_dir_without_weights_is_rejected(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        hub.resolve(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="no weights .*model.safetensors"):
        hub.resolve(tmp_path)
    with pytest.raises(InputError, match="no config.json"):
        load(tmp_path.parent)


def test_adapter_dir_without_weights_and_file_paths_are_rejected(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    with pytest.raises(InputError, match="adapter_config.json but no weights"):
        hub.resolve(tmp_path)
    with pytest.raises(InputError, match="is a file, not a directory"):
        hub.resolve(tmp_path / "adapter_config.json")


def test_unknown_alias_and_uncached_hub_id_never_download():
    with pytest.raises(InputError, match="not a known alias \\(smollm2-135m-instruct\\)"):
        hub.resolve("no-such-model")
    with pytest.raises(InputError, match="no such local directory, and as a hub id it is not in the local Hugging Face cache "
                                         "\\(this project never downloads\\)"):
        hub.resolve("rationale-sft-tests/not-a-cached-model")


def test_hub_id_in_the_local_cache_resolves_and_loads(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from rationale_sft.models.families import build_model
    from rationale_sft.models.tokenizer import train_tokenizer

    repo = tmp_path / "hf" / "models--acme--tiny"
    snapshot = repo / "snapshots" / ("a" * 40)
    tok = train_tokenizer(["memory visit stroke " * 20] * 20, 300, snapshot)
    build_model("llama", "xs", tok, seed=0).save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    assert hub.resolve("acme/tiny") == snapshot
    model, loaded = load("acme/tiny")
    assert model.config.model_type == "llama" and loaded.get_vocab() == tok.get_vocab()


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RATIONALE_SFT_CACHE", str(tmp_path_factory.mktemp("cache")))
        first = hub.resolve("smollm2-135m-instruct")
        again = hub.resolve("SmolLM2-135M-Instruct")
    assert again == first
    return first


@pytest.mark.slow
def test_smollm2_gguf_converts_once_and_predicts(smollm2_dir):
    assert (smollm2_dir / "DONE").is_file() and (smollm2_dir / "model.safetensors").is_file()
    assert not [p for p in smollm2_dir.parent.iterdir() if p.name.startswith(".")]  # no leftover temp dir
    info = json.loads((smollm2_dir / "conversion.json").read_text())
    assert info["has_chat_template"] and info["label_tokens"] == {
        "after the prompt": {"Yes": ["Yes"], "No": ["No"]},  # the assistant turn starts on a new line
        "after the answer marker": {"Yes": ["ĠYes"], "No": ["ĠNo"]}}
    mask = os.umask(0)
    os.umask(mask)
    assert all(p.stat().st_mode & 0o777 == (0o777 if p.is_dir() else 0o666) & ~mask
               for p in [smollm2_dir, *smollm2_dir.iterdir()])  # a cache other users can read
    model, tok = load(smollm2_dir)
    assert model.dtype == torch.float32 and model.config.model_type == "llama"
    assert len(label_token_ids(tok, strict=True)) == 2
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>assistant" in prompt
    ids = tok(prompt + "The capital of France is", return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
    assert tok.decode(int(logits.argmax())).strip() == "Paris"  # dequantised weights are the real model
