"""Chat handling: the system prompt is a setting (none added by default), the label tokens recorded are the ones
used after the template, and train.max_len=0 follows the model's context."""

import json

import pytest

from rationale_sft.answer import system_turn, wrap_prompt
from rationale_sft.config import build
from rationale_sft.config.train import TrainConfig
from rationale_sft.errors import InputError
from rationale_sft.models import load_tokenizer
from rationale_sft.models.tokenizer import slot_label_tokens
from rationale_sft.train.loop import train
from rationale_sft.train.toy import toy_data, toy_model

hub = pytest.importorskip("rationale_sft.models.hub")

SMOLLM_DEFAULT = "You are a helpful AI assistant named SmolLM"
PLAIN = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
"A template that adds no system turn of its own."
NO_SYSTEM = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
             "{% endif %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
             "{% if add_generation_prompt %}<|assistant|>{% endif %}")
"A template that refuses system turns (as Gemma's does)."


@pytest.fixture(scope="module")
def smollm2():
    return load_tokenizer(hub.resolve(hub.SMOLLM2))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    ex, rat = toy_data(n=12, seed=3)
    base = toy_model(tmp_path_factory.mktemp("m") / "base", ex["prompt"].to_list() + rat["text"].to_list(),
                     vocab_size=400)
    return ex, rat, base


@pytest.mark.slow
def test_smollm2_default_system_prompt_is_not_added_unless_asked(smollm2):
    none = wrap_prompt(smollm2, "Will it?\nAnswer:", True)
    assert SMOLLM_DEFAULT not in none and none.startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n")
    assert SMOLLM_DEFAULT in wrap_prompt(smollm2, "Will it?\nAnswer:", True, None)  # the template's own choice
    own = wrap_prompt(smollm2, "Will it?\nAnswer:", True, "Answer Yes or No.")
    assert "<|im_start|>system\nAnswer Yes or No.<|im_end|>" in own and SMOLLM_DEFAULT not in own


@pytest.mark.slow
def test_smollm2_label_tokens_are_recorded_as_used_after_the_template(smollm2):
    chat = slot_label_tokens(smollm2, True)
    assert chat["after the prompt"] == {"Yes": ["Yes"], "No": ["No"]}  # start of the assistant turn: no space
    assert chat["after the answer marker"] == {"Yes": ["ĠYes"], "No": ["ĠNo"]}
    assert slot_label_tokens(smollm2, False)["after the prompt"] == {"Yes": ["ĠYes"], "No": ["ĠNo"]}


def test_templates_without_a_default_or_without_system_turns(tiny):
    tok = load_tokenizer(tiny[2])
    tok.chat_template = PLAIN
    assert system_turn(tok, "") == [] and wrap_prompt(tok, "Q", True) == "<|user|>Q\n<|assistant|>"
    assert wrap_prompt(tok, "Q", True, "Be brief.") == "<|system|>Be brief.\n<|user|>Q\n<|assistant|>"
    tok.chat_template = NO_SYSTEM
    assert wrap_prompt(tok, "Q", True) == "<|user|>Q\n<|assistant|>"
    with pytest.raises(InputError, match="refuses a system turn"):
        wrap_prompt(tok, "Q", True, "Be brief.")


def test_training_records_max_len_from_the_context_and_the_label_tokens_it_used(tiny, tmp_path):
    from transformers import AutoConfig

    ex, rat, base = tiny
    cfg = build(TrainConfig, {"steps": 1, "micro_batch": 2})
    assert cfg.max_len == 0
    train(cfg, tmp_path, ex, rat, base)
    meta = json.loads((tmp_path / "checkpoint" / "training.json").read_text())
    ctx = AutoConfig.from_pretrained(str(base)).max_position_embeddings
    assert meta["max_len"] == ctx and meta["system_prompt"] == "" and not meta["chat"]
    assert meta["label_tokens"]["after the prompt"] == meta["label_tokens"]["after the answer marker"]
    assert all(len(toks) == 1 for toks in meta["label_tokens"]["after the prompt"].values())


def test_negative_max_len_is_refused():
    with pytest.raises(Exception, match="max_len"):
        build(TrainConfig, {"max_len": -1})
