"""Arms: exact loss-mask positions per arm on a real tiny tokenizer, truncation, errors."""

import polars as pl
import pytest

from rationale_sft.config import build
from rationale_sft.config.train import TrainConfig
from rationale_sft.errors import InputError
from rationale_sft.models.tokenizer import train_tokenizer
from rationale_sft.render.assemble import prompt_parts
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
    return [encode(tok, prompt, t.segments, max_len=max_len, chat=False, pad_unit=cfg.pad_unit, prefix=t.prefix,
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
    parts = prompt_parts(row)
    full = enc(tok, TrainConfig(arm="freeform"), parts, True, rationale)[0]
    short = enc(tok, TrainConfig(arm="freeform"), parts, True, rationale, max_len=len(full.input_ids) - 5)[0]
    assert short.n_dropped >= 1 and len(short.input_ids) <= len(full.input_ids) - 5
    assert short.labels[short.n_prompt:] == full.labels[full.n_prompt:]
    with pytest.raises(InputError, match="more than max_len"):
        enc(tok, TrainConfig(arm="freeform"), parts, True, rationale, max_len=10)


def test_encode_rows_counts_and_hashes(data):
    ex, rat, tok = data
    for arm in ("label_only", "freeform", "multitask"):
        cfg = TrainConfig(arm=arm, max_len=1024)
        rows = training_rows(cfg, ex, rat)
        seqs, table = encode_rows(cfg, tok, rows, chat=False)
        assert table.height == len(seqs) == rows.height * (2 if arm == "multitask" else 1)
        assert table["prompt_hash"].to_list()[:1] == rows["prompt_hash"].to_list()[:1]
        assert (table["n_target_tokens"] > 0).all()
    free = encode_rows(TrainConfig(arm="freeform", max_len=1024), tok, training_rows(TrainConfig(arm="freeform"), ex, rat), False)[1]
    label = encode_rows(TrainConfig(max_len=1024), tok, training_rows(TrainConfig(), ex, rat), False)[1]
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


CONTROL_ARMS = ["shuffled_rationale", "flipped_rationale", "blind_rationale", "segment_norm", "answer_stage"]


def arm_cfg(arm, **extra):
    steps = {"steps": 10, "answer_stage_steps": 2} if arm == "answer_stage" else {}
    return build(TrainConfig, {"arm": arm, **steps, **extra})


@pytest.fixture(scope="module")
def modes():
    ex, rat = toy_data(n=30, seed=3, modes=("conditioned", "blind", "flipped"))
    return ex, rat, train_tokenizer(ex["prompt"].to_list() + rat["text"].to_list(), 500)


@pytest.mark.parametrize("arm", CONTROL_ARMS)
def test_control_and_balancing_arms_mask_rationale_marker_and_label(data, arm):
    ex, _, tok = data
    prompt, rationale = ex["prompt"][1], "Age 70 and diabetes raise the risk."
    (e,) = enc(tok, arm_cfg(arm, label_weight=7.0), prompt, True, rationale)
    n = len(ids(tok, prompt))
    target = ids(tok, " " + rationale) + ids(tok, "\nAnswer:") + ids(tok, " Yes")
    assert e.labels == [-100] * n + target and e.input_ids[n:] == target
    assert e.is_label == [False] * (len(e.input_ids) - 1) + [True]
    assert e.weights == [0.0] * n + [1.0] * len(target)  # static weights; segment_norm/answer_stage set theirs per step
    assert arms.SCORING[arm] == "generate" and arms.rationale_style(arm_cfg(arm)) == "freeform"


def test_each_arm_reads_its_teacher_mode(modes):
    ex, rat, tok = modes
    truth = dict(zip(ex["subject_id"], ex["label"]))
    for arm, mode in [("flipped_rationale", "flipped"), ("blind_rationale", "blind"), ("freeform", "conditioned"),
                      ("shuffled_rationale", "conditioned"), ("segment_norm", "conditioned")]:
        rows = training_rows(arm_cfg(arm), ex, rat)
        want = rat.filter((pl.col("mode") == mode) & (pl.col("style") == "freeform"))
        texts = dict(zip(want["subject_id"], want["text"]))
        donor = rows["rationale_subject_id"].to_list()
        assert rows["rationale"].to_list() == [texts[d] for d in donor]
    flipped = training_rows(arm_cfg("flipped_rationale"), ex, rat)
    conclusions = dict(zip(*rat.filter(pl.col("mode") == "flipped").select("subject_id", "conclusion")
                           .to_dict().values()))
    assert all((conclusions[s] == "Yes") != truth[s] for s in flipped["subject_id"])  # the opposite label ...
    (e,) = enc(tok, arm_cfg("flipped_rationale"), flipped["prompt"][0], flipped["label"][0], flipped["rationale"][0])
    assert e.labels[-1] == ids(tok, " " + arms.label_word(flipped["label"][0]))[0]  # ... then the truth
    with pytest.raises(InputError, match="no freeform/flipped rationale.*mode=flipped"):
        training_rows(arm_cfg("flipped_rationale"), ex, rat.filter(pl.col("mode") != "flipped"))


def test_shuffled_rationales_are_a_seeded_derangement_within_each_label(modes):
    ex, rat, _ = modes
    rows = training_rows(arm_cfg("shuffled_rationale", seed=3), ex, rat)
    own = training_rows(arm_cfg("freeform"), ex, rat)
    assert rows["subject_id"].to_list() == own["subject_id"].to_list()
    donor, sid = rows["rationale_subject_id"].to_list(), rows["subject_id"].to_list()
    label = dict(zip(sid, rows["label"].to_list()))
    assert all(d != s for d, s in zip(donor, sid))  # nobody keeps their own rationale
    assert all(label[d] == label[s] for d, s in zip(donor, sid))  # the donor has the same label
    assert sorted(donor) == sorted(sid)  # every rationale used exactly once
    own_text = dict(zip(sid, own["rationale"].to_list()))
    assert rows["rationale"].to_list() == [own_text[d] for d in donor]
    again = training_rows(arm_cfg("shuffled_rationale", seed=3), ex, rat)
    other = training_rows(arm_cfg("shuffled_rationale", seed=4), ex, rat)
    assert again.equals(rows) and other["rationale_subject_id"].to_list() != donor
    lonely = ex.filter((pl.col("split") != "train") | ~pl.col("label") | (pl.col("subject_id") == min(
        ex.filter(pl.col("label") & (pl.col("split") == "train"))["subject_id"])))
    with pytest.raises(InputError, match="label Yes has only one"):
        training_rows(arm_cfg("shuffled_rationale"), lonely, rat)


def micro_batches(tok, cfg, rows, splits):
    from rationale_sft.train.data import collate

    seqs = [enc(tok, cfg, r["prompt"], r["label"], r["rationale"])[0] for r in rows.iter_rows(named=True)]
    return seqs, [collate(seqs[a:b], 0) for a, b in splits]


def test_segment_norm_loss_is_the_label_mean_plus_the_rationale_mean(modes, tmp_path):
    import torch

    from rationale_sft import models
    from rationale_sft.train.loop import token_losses
    from rationale_sft.train.toy import toy_model

    ex, rat, _ = modes
    model, tok = models.load(toy_model(tmp_path / "m", ex["prompt"].to_list() + rat["text"].to_list(), vocab_size=500))
    cfg = arm_cfg("segment_norm", segment_label_weight=3.0)
    rows = training_rows(cfg, ex, rat)[:3]
    seqs, micro = micro_batches(tok, cfg, rows, [(0, 1), (1, 3)])
    with torch.no_grad():
        parts = [token_losses(model, b, False, "cpu") for b in arms.step_batches(cfg, "main", micro)]
        loss = sum(float((ce * w).sum()) for ce, w, _, _ in parts)
        label_ce = torch.cat([ce[lab] for ce, _, lab, _ in parts])
        other_ce = torch.cat([ce[valid & ~lab] for ce, _, lab, valid in parts])
        one = token_losses(model, arms.step_batches(cfg, "main", micro_batches(tok, cfg, rows, [(0, 3)])[1])[0],
                           False, "cpu")
    assert len(label_ce) == 3 and len(other_ce) == sum(len(e.input_ids) - e.n_prompt - 1 for e in seqs)
    hand = 3.0 * float(label_ce.mean()) + float(other_ce.mean())
    assert loss == pytest.approx(hand, rel=1e-5)
    assert float((one[0] * one[1]).sum()) == pytest.approx(hand, rel=1e-5)  # one micro-batch or two: same loss


def test_answer_stage_mask_covers_only_the_label_tokens(data):
    ex, _, tok = data
    cfg = arm_cfg("answer_stage")
    rows = [(ex["prompt"][i], bool(ex["label"][i]), f"Rationale number {i}.") for i in range(3)]
    from rationale_sft.train.data import collate

    seqs = [enc(tok, cfg, *r)[0] for r in rows]
    (main,) = arms.step_batches(cfg, "main", [collate(seqs, 0)])
    (answer,) = arms.step_batches(cfg, "answer", [collate(seqs, 0)])
    assert [arms.stage_of(cfg, s, 10) for s in range(10)] == ["main"] * 8 + ["answer"] * 2
    for i, e in enumerate(seqs):
        width = len(e.input_ids)
        label_pos = [e.is_label.index(True)]
        assert [j for j in range(width) if answer["labels"][i, j] != -100] == label_pos
        assert [j for j in range(width) if answer["weights"][i, j] > 0] == label_pos
        assert answer["labels"][i, label_pos[0]] == e.labels[label_pos[0]]
        assert [j for j in range(width) if main["labels"][i, j] != -100] == list(range(e.n_prompt, width))
    assert float(answer["weights"].sum()) == pytest.approx(1.0) and float(main["weights"].sum()) == pytest.approx(1.0)
