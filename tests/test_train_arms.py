"""Arms: exact loss-mask positions per arm on a real tiny tokenizer, truncation, errors."""

import pytest

from rationale_sft.config import build
from rationale_sft.config.train import TrainConfig
from rationale_sft.errors import InputError
from rationale_sft.models.tokenizer import train_tokenizer
from rationale_sft.train import arms
from rationale_sft.train.data import encode
from rationale_sft.train.loop import check_mask, encode_rows, training_rows
from rationale_sft.train.toy import toy_data


@pytest.fixture(scope="module")
def data():
    ex, rat = toy_data(n=30, seed=3)
    tok = train_tokenizer(ex["prompt"].to_list() + rat["text"].to_list(), 500)
    return ex, rat, tok


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def enc(tok, cfg, prompt, label, rationale, max_len=1024):
    tasks = arms.render_tasks(cfg, prompt, label, rationale)
    return [encode(tok, t.prefix + prompt, t.segments, max_len=max_len, chat=False, pad_unit=cfg.pad_unit,
                   weight=lambda k: arms.loss_weight(cfg, k)) for t in tasks]


def target_positions(e):
    return [i for i, lab in enumerate(e.labels) if lab != -100]


def test_label_only_mask_is_the_single_label_token(data):
    ex, _, tok = data
    prompt = ex["prompt"][0]
    (e,) = enc(tok, TrainConfig(arm="label_only"), prompt, True, None)
    n = len(ids(tok, prompt))
    assert target_positions(e) == [n]
    assert e.labels[n] == ids(tok, " Yes")[0] and len(ids(tok, " Yes")) == 1
    assert e.is_label == [False] * n + [True]
    (e_no,) = enc(tok, TrainConfig(arm="label_only"), prompt, False, None)
    assert e_no.labels[n] == ids(tok, " No")[0] != e.labels[n]


@pytest.mark.parametrize("arm", ["freeform", "stepwise", "weighted"])
def test_rationale_arms_mask_rationale_marker_and_label(data, arm):
    ex, _, tok = data
    prompt, rationale = ex["prompt"][1], "Age 70 and diabetes raise the risk."
    cfg = build(TrainConfig, {"arm": arm, "label_weight": 7.0})
    (e,) = enc(tok, cfg, prompt, False, rationale)
    n = len(ids(tok, prompt))
    target = ids(tok, " " + rationale) + ids(tok, "\nAnswer:") + ids(tok, " No")
    assert target_positions(e) == list(range(n, n + len(target)))
    assert e.labels[n:] == target
    assert [i for i, f in enumerate(e.is_label) if f] == [len(e.input_ids) - 1]
    assert e.weights[-1] == (7.0 if arm == "weighted" else 1.0) and set(e.weights[n:-1]) == {1.0}
    assert set(e.weights[:n]) == {0.0}


def test_label_then_rationale_puts_the_label_first(data):
    ex, _, tok = data
    prompt = ex["prompt"][2]
    (e,) = enc(tok, TrainConfig(arm="label_then_rationale"), prompt, True, "Because of age.")
    n = len(ids(tok, prompt))
    assert e.labels[n:] == ids(tok, " Yes") + ids(tok, "\nBecause of age.")
    assert [i for i, f in enumerate(e.is_label) if f] == [n]


def test_multitask_gives_two_prefixed_tasks(data):
    ex, _, tok = data
    prompt = ex["prompt"][3]
    lab, rat = enc(tok, TrainConfig(arm="multitask"), prompt, True, "Old age.")
    assert lab.input_ids[:len(ids(tok, "[label] " + prompt))] == ids(tok, "[label] " + prompt)
    assert target_positions(lab) == [len(lab.input_ids) - 1] and sum(lab.is_label) == 1
    assert rat.labels[rat.n_prompt:] == ids(tok, " Old age.") and sum(rat.is_label) == 0


def test_padded_arm_matches_rationale_length_with_neutral_tokens(data):
    ex, _, tok = data
    prompt, rationale = ex["prompt"][4], "The main factors are age 71 and two APOE alleles."
    (pad,) = enc(tok, TrainConfig(arm="padded_label_only"), prompt, True, rationale)
    (free,) = enc(tok, TrainConfig(arm="freeform"), prompt, True, rationale)
    assert len(target_positions(pad)) == len(target_positions(free))
    unit = set(ids(tok, " ."))
    n_rat = len(ids(tok, " " + rationale))
    assert set(pad.labels[pad.n_prompt:pad.n_prompt + n_rat]) <= unit
    assert pad.labels[-1] == free.labels[-1] == ids(tok, " Yes")[0]


def test_truncation_drops_oldest_history_never_the_target(data):
    ex, _, tok = data
    row = max(ex.iter_rows(named=True), key=lambda r: r["n_history_items"])
    rationale = "A long rationale. " * 5
    full = enc(tok, TrainConfig(arm="freeform"), row["prompt"], True, rationale)[0]
    short = enc(tok, TrainConfig(arm="freeform"), row["prompt"], True, rationale, max_len=len(full.input_ids) - 5)[0]
    assert short.n_dropped >= 1 and len(short.input_ids) <= len(full.input_ids) - 5
    assert short.labels[short.n_prompt:] == full.labels[full.n_prompt:]
    with pytest.raises(InputError, match="more than max_len"):
        enc(tok, TrainConfig(arm="freeform"), row["prompt"], True, rationale, max_len=10)


def test_encode_rows_counts_and_hashes(data):
    ex, rat, tok = data
    for arm in ("label_only", "freeform", "multitask"):
        cfg = TrainConfig(arm=arm)
        rows = training_rows(cfg, ex, rat)
        seqs, table = encode_rows(cfg, tok, rows, chat=False)
        assert table.height == len(seqs) == rows.height * (2 if arm == "multitask" else 1)
        assert table["prompt_hash"].to_list()[:1] == rows["prompt_hash"].to_list()[:1]
        assert (table["n_target_tokens"] > 0).all()
    free = encode_rows(TrainConfig(arm="freeform"), tok, training_rows(TrainConfig(arm="freeform"), ex, rat), False)[1]
    label = encode_rows(TrainConfig(), tok, training_rows(TrainConfig(), ex, rat), False)[1]
    assert free["prompt_hash"].to_list() == label["prompt_hash"].to_list()
    assert set(free["target_hash"]).isdisjoint(label["target_hash"])


def test_missing_rationales_and_zero_target_are_errors(data):
    ex, rat, tok = data
    with pytest.raises(InputError, match="no freeform/blind rationale"):
        training_rows(TrainConfig(arm="freeform", rationale_mode="blind"), ex, rat)
    (e,) = enc(tok, TrainConfig(), ex["prompt"][0], True, None)
    broken = e._replace(weights=[0.0] * len(e.weights))
    with pytest.raises(InputError, match="zero trainable tokens"):
        check_mask(broken, "subject_id 1")
