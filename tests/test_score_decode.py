"""The KV-cached scoring decoder: same greedy tokens as HF generate(), marker stop on ids, batch invariance, slots."""

import numpy as np
import pytest

from rationale_sft.models.families import build_model
from rationale_sft.models.tokenizer import train_tokenizer
from rationale_sft.score.decode import decode_to_marker
from rationale_sft.score.slot import slot_scores
from rationale_sft.train.data import left_pad, pad_id
from rationale_sft.train.toy import toy_data

NEW = 12


@pytest.fixture(scope="module")
def tok():
    ex, rat = toy_data(n=30, seed=3)
    return train_tokenizer(ex["prompt"].to_list() + rat["text"].to_list(), 400)


@pytest.fixture(scope="module")
def prompts(tok):
    ex, _ = toy_data(n=30, seed=3)
    texts = ex["prompt"].to_list()
    # several lengths in one batch, one past mistral's 256-token sliding window
    return [tok(t, add_special_tokens=False)["input_ids"] for t in (texts[0][-60:], texts[1], texts[2][-25:],
                                                                    texts[3] + texts[4] + texts[5])]


def model_of(family, tok):
    model = build_model(family, "xs", tok, seed=1)
    return model.eval()


def hf_greedy(model, tok, contexts, new):
    """HF generate(), greedy, fixed length; each row's new tokens up to (not including) its first EOS."""
    import torch

    batch = left_pad(contexts, pad_id(tok))
    with torch.no_grad():
        seqs = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], do_sample=False,
                              max_new_tokens=new, pad_token_id=pad_id(tok), eos_token_id=tok.eos_token_id)
    out = []
    for row in seqs[:, batch["input_ids"].shape[1]:].tolist():
        out.append(row[:row.index(tok.eos_token_id)] if tok.eos_token_id in row else row)
    return out


def decode(model, tok, contexts, marker_ids, **kw):
    args = dict(marker=tok.decode(marker_ids), marker_ids=marker_ids, max_new_tokens=NEW, batch_size=len(contexts),
                greedy=True, temperature=1.0, seed=0, device="cpu")
    return decode_to_marker(model, tok, contexts, **{**args, **kw})


def absent(seqs, marker):
    return all(all(s[k:k + len(marker)] != marker for k in range(len(s))) for s in seqs)


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "mistral", "gemma"])
def test_greedy_tokens_equal_hf_generate(tok, prompts, family):
    model = model_of(family, tok)
    want = hf_greedy(model, tok, prompts, NEW)
    marker = tok("\nAnswer:", add_special_tokens=False)["input_ids"]
    assert absent(want, marker)  # no marker stop: the rows run to max_new_tokens (or EOS)
    got = decode(model, tok, prompts, marker)
    assert [g.ids[:len(g.ids) - len(marker)] for g in got.gens] == want
    assert not any(g.marker_found for g in got.gens)


def first_stop(seq, marker):
    return next(k + len(marker) for k in range(len(seq)) if seq[k:k + len(marker)] == marker)


def test_stops_on_marker_ids_and_reads_both_slots(tok, prompts):
    model = model_of("llama", tok)
    free = hf_greedy(model, tok, prompts, NEW)
    marker = free[0][3:5]  # ids the model writes greedily in row 0
    slot_ids = [5, 9, int(marker[0])]
    got = decode(model, tok, prompts, marker, slot_ids=slot_ids, states=True)
    row = got.gens[0]
    assert row.marker_found and row.ids == free[0][:first_stop(free[0], marker)]
    for g, seq in zip(got.gens, free):  # every row stops at its first marker, or runs on and gets it appended
        stop = first_stop(seq, marker) if not absent([seq], marker) else None
        assert g.ids == (seq[:stop] if stop else seq + marker) and g.marker_found == bool(stop)
    direct = slot_scores_logp(model, tok, prompts, slot_ids)
    after = slot_scores_logp(model, tok, [c + g.ids for c, g in zip(prompts, got.gens)], slot_ids)
    np.testing.assert_allclose(got.direct.logp, direct[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.after.logp, after[0], rtol=1e-4, atol=1e-5)
    assert got.direct.top.tolist() == direct[1] and got.after.top.tolist() == after[1]
    np.testing.assert_allclose(got.states, after[2], rtol=1e-4, atol=1e-5)


def slot_scores_logp(model, tok, seqs, slot_ids):
    """log P(slot_ids), argmax id and last hidden state at each sequence's end, from one plain forward each."""
    import torch

    logp, top, states = [], [], []
    for s in seqs:
        with torch.no_grad():
            out = model(torch.tensor([s]), output_hidden_states=True)
        lp = torch.log_softmax(out.logits[0, -1].float(), -1)
        logp.append(lp[slot_ids].numpy())
        top.append(int(lp.argmax()))
        states.append(out.hidden_states[-1][0, -1].numpy())
    return np.array(logp), top, np.array(states)


def test_text_spelling_of_the_marker_is_cut_after_the_loop(tok, prompts):
    model = model_of("llama", tok)
    free = hf_greedy(model, tok, prompts, NEW)
    text = tok.decode(free[1][2:4])
    marker = tok(" zebra qx", add_special_tokens=False)["input_ids"]  # ids never written: the text must cut
    assert absent(free, marker)
    got = decode(model, tok, prompts, marker, marker=text, slot_ids=[5, 9])
    g = got.gens[1]
    assert g.marker_found and text in tok.decode(g.ids) and len(g.ids) <= 4
    after = slot_scores_logp(model, tok, [prompts[1] + g.ids], [5, 9])
    np.testing.assert_allclose(got.after.logp[1], after[0][0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("greedy", [True, False])
def test_results_do_not_depend_on_batch_size(tok, prompts, greedy):
    model = model_of("qwen2", tok)
    marker = hf_greedy(model, tok, prompts[:1], NEW)[0][2:4]
    runs = [decode(model, tok, prompts, marker, batch_size=bs, greedy=greedy, slot_ids=[5, 9], seed=4)
            for bs in (1, 3, len(prompts))]
    for other in runs[1:]:
        assert other.gens == runs[0].gens
        np.testing.assert_allclose(other.direct.logp, runs[0].direct.logp, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(other.after.logp, runs[0].after.logp, rtol=1e-4, atol=1e-5)


def test_sampling_follows_the_seed_and_keeping_finished_rows_changes_nothing(tok, prompts):
    model = model_of("llama", tok)
    marker = tok("\nAnswer:", add_special_tokens=False)["input_ids"]
    a = decode(model, tok, prompts, marker, greedy=False, seed=1, temperature=2.0)
    b = decode(model, tok, prompts, marker, greedy=False, seed=1, temperature=2.0, drop_finished=False)
    c = decode(model, tok, prompts, marker, greedy=False, seed=2, temperature=2.0)
    assert a.gens == b.gens and a.gens != c.gens
    assert a.gens != decode(model, tok, prompts, marker).gens  # not the greedy path


def test_eos_stops_a_row_and_the_marker_follows(tok, prompts):
    import torch

    model = model_of("llama", tok)
    with torch.no_grad():  # make EOS the greedy choice everywhere: every row ends at once, marker appended
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
        model.lm_head.bias[tok.eos_token_id] = 1e4
    marker = tok("\nAnswer:", add_special_tokens=False)["input_ids"]
    got = decode(model, tok, prompts, marker, slot_ids=[5])
    assert all(g.ids == marker and not g.marker_found and g.text == "" for g in got.gens)
    after = slot_scores_logp(model, tok, [p + marker for p in prompts], [5])
    np.testing.assert_allclose(got.after.logp, after[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tail", ["Answer:", "\n"])  # single-token label words (decoder reads), multi-token (passes)
def test_score_contexts_slots_equal_slot_scores(tok, prompts, tail):
    from rationale_sft.config.score import ScoreConfig
    from rationale_sft.score.stage import score_contexts

    model = model_of("llama", tok)
    contexts = [p + tok(tail, add_special_tokens=False)["input_ids"] for p in prompts]
    cfg = ScoreConfig(batch_size=3, max_new_tokens=6, save_states=True)
    got = score_contexts(model, tok, contexts, [tail] * 4, mode="generate", marker="Answer:", cfg=cfg, device="cpu")
    marker = tok("\nAnswer:", add_special_tokens=False)["input_ids"]
    seqs = [c + decode(model, tok, [c], marker, max_new_tokens=6).gens[0].ids for c in contexts]
    direct = slot_scores(model, tok, contexts, [tail] * 4, batch_size=1, device="cpu")
    after = slot_scores(model, tok, seqs, ["Answer:"] * 4, batch_size=1, device="cpu", states=True)
    np.testing.assert_allclose(got["p_direct"], direct["p_yes"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["p_yes"], after["p_yes"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["label_mass"], after["label_mass"], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(got["states"], after["states"], rtol=1e-4, atol=1e-5)
    assert got["conclusion"] == after["top"]
    assert got["n_generated_tokens"] == [len(s) - len(c) for s, c in zip(seqs, contexts)]


def test_bf16_autocast_runs(tok, prompts):
    model = model_of("llama", tok)
    marker = tok("\nAnswer:", add_special_tokens=False)["input_ids"]
    got = decode(model, tok, prompts, marker, slot_ids=[5, 9], bf16=True)
    assert got.after.logp.shape == (4, 2) and np.isfinite(got.after.logp).all()
    assert all(len(g.ids) <= NEW + len(marker) for g in got.gens)


@pytest.mark.parametrize("greedy", [True, False])
def test_a_shared_prefill_decodes_as_the_repeated_contexts(tok, prompts, greedy):
    """K rows from one prefill write the tokens and read the slots of K copies of the context, each prefilled.

    Tokens and after-marker slots are bit-identical; the direct slot may differ in the last float32 bit
    (seen: 4.8e-7 in log P), because a prefill of 1 row and one of K rows sum the output layer in another
    order on CPU, hence atol 1e-6 there."""
    model = model_of("llama", tok)
    marker = tok("\nAnswer:", add_special_tokens=False)["input_ids"]
    k = 3
    kw = dict(greedy=greedy, temperature=2.0, slot_ids=[5, 9], batch_size=k,
              row_seeds=None if greedy else [11 * r for r in range(len(prompts) * k)])
    shared = decode(model, tok, prompts, marker, repeats=k, **kw)
    each = decode(model, tok, [p for p in prompts for _ in range(k)], marker, **kw)
    assert shared.gens == each.gens
    assert greedy or len({tuple(g.ids) for g in shared.gens}) > len(prompts)  # samples of a context differ
    np.testing.assert_array_equal(shared.after.logp, each.after.logp)
    np.testing.assert_array_equal(shared.after.top, each.after.top)
    np.testing.assert_allclose(shared.direct.logp, each.direct.logp, rtol=0, atol=1e-6)


def count_forwards(model) -> list:
    """Shapes of the input ids of every forward call of ``model`` from now on."""
    shapes = []
    model.register_forward_pre_hook(lambda m, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
                                    with_kwargs=True)
    return shapes


def test_each_context_is_prefilled_once_for_both_slots_and_its_rationales(tok, prompts):
    from rationale_sft.config.score import ScoreConfig
    from rationale_sft.score.stage import generate_and_read, score_contexts

    model = model_of("llama", tok)
    tail = tok("Answer:", add_special_tokens=False)["input_ids"]  # single-token label words after it
    contexts = [p + tail for p in prompts]
    shapes = count_forwards(model)
    cfg = ScoreConfig(batch_size=1, max_new_tokens=6)
    got = score_contexts(model, tok, contexts, ["Answer:"] * 4, mode="generate", marker="Answer:", cfg=cfg,
                         device="cpu")
    # greedy: one prefill per context (its direct slot), then one 1-token step per token fed, the last of
    # which feeds the marker and reads the after slot: no other pass
    assert sorted(s[1] for s in shapes if s[1] > 1) == sorted(map(len, contexts))
    assert len(shapes) == len(contexts) + sum(got["n_generated_tokens"])
    shapes.clear()
    k = 3
    gens, _, _ = generate_and_read(model, tok, contexts, ["Answer:"] * 4, marker="Answer:",
                                   cfg=ScoreConfig(batch_size=2 * k, max_new_tokens=6), device="cpu",
                                   row_seeds=list(range(4 * k)), repeats=k)
    prefills = [s for s in shapes if s[1] > 1]
    assert len(gens) == 4 * k and [s[0] for s in prefills] == [2, 2]  # K samples of 2 contexts per batch


def test_contexts_are_batched_by_length_and_their_order_changes_nothing(tok, prompts):
    """Batches hold contexts of neighbouring lengths (the least padding), so a shuffled input forms the same
    batches and gives bit-identical results."""
    model = model_of("qwen2", tok)
    marker = tok("\nAnswer:", add_special_tokens=False)["input_ids"]
    shapes = count_forwards(model)
    tails = ["Answer:"] * len(prompts)
    fwd = slot_scores(model, tok, prompts, tails, batch_size=2, device="cpu")
    lens = sorted(map(len, prompts))
    assert [s[1] for s in shapes] == [lens[1], lens[3]]  # each batch padded to its own longest row
    perm = [2, 0, 3, 1]
    rev = slot_scores(model, tok, [prompts[i] for i in perm], tails, batch_size=2, device="cpu")
    assert rev["p_yes"].tolist() == fwd["p_yes"][perm].tolist()
    a = decode(model, tok, prompts, marker, batch_size=2, slot_ids=[5, 9])
    b = decode(model, tok, [prompts[i] for i in perm], marker, batch_size=2, slot_ids=[5, 9])
    assert b.gens == [a.gens[i] for i in perm]
    np.testing.assert_array_equal(b.direct.logp, a.direct.logp[perm])
    np.testing.assert_array_equal(b.after.logp, a.after.logp[perm])


def test_a_lora_wrapped_model_decodes_as_its_base_without_deprecation_warnings(tok, prompts):
    """peft's forward takes **kwargs; the KV cache must still go under the keyword the base model names."""
    import warnings

    from rationale_sft.config import build
    from rationale_sft.config.model import LoraConfig
    from rationale_sft.models.lora import apply_lora

    model = model_of("llama", tok)
    marker = tok("\nAnswer:", add_special_tokens=False)["input_ids"]
    want = decode(model, tok, prompts, marker, slot_ids=[5, 9])
    lora = apply_lora(model, build(LoraConfig, {"enabled": True, "r": 4})).eval()  # B starts at 0: no change
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = decode(lora, tok, prompts, marker, slot_ids=[5, 9])
    assert not [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert got.gens == want.gens
    np.testing.assert_allclose(got.after.logp, want.after.logp, rtol=1e-5, atol=1e-6)
