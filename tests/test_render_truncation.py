"""One truncation: training, scoring and few-shot fit a prompt by dropping its oldest history items from the
structured parts stored in examples.parquet, exactly as render does, in every template."""

import dataclasses

import pytest

from rationale_sft.errors import InputError
from rationale_sft.fewshot.stage import fit_fewshot
from rationale_sft.models import load_tokenizer
from rationale_sft.render.assemble import PromptParts, assemble, fit_prompt, prompt_parts
from rationale_sft.render.templates import get_template
from rationale_sft.score.stage import build_contexts
from rationale_sft.train.data import encode
from rationale_sft.train.toy import toy_data, toy_model

ITEMS = ("  - 1990-01 (20 years before assessment): Asthma", "  - 1995-03 (15 years before assessment): Gout",
         "  - 2001-07 (9 years before assessment): Essential hypertension",
         "  - 2008-02 (2 years before assessment): Type 2 diabetes mellitus")
GROUPS = (9, 12, 8, 3)  # respiratory, musculoskeletal, circulatory, endocrine chapters


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    ex, rat = toy_data(n=16, seed=4)
    texts = ex["prompt"].to_list() + rat["text"].to_list() + list(ITEMS)
    return load_tokenizer(toy_model(tmp_path_factory.mktemp("m") / "base", texts, vocab_size=400))


def grouped(dropped: int = 0) -> PromptParts:
    return PromptParts(header="Health history.\nDiagnoses before the assessment by body system:", items=ITEMS,
                       group_ids=GROUPS, question="Question: Will it?\nAnswer:", template=get_template("by_system"),
                       dropped=dropped)


def n_tokens(tok, text: str) -> int:
    return len(tok(text)["input_ids"])


def test_training_scoring_and_fewshot_cut_a_grouped_prompt_as_render_does(tok):
    parts = grouped()
    full = assemble(parts)[0]
    budget = n_tokens(tok, full) - 12  # a couple of items must go
    want, n = assemble(parts, budget, lambda t: n_tokens(tok, t))
    assert 0 < n < len(ITEMS) and want.splitlines()[2] == f"- ({n} earlier diagnoses not shown)"
    kept_groups = {g for g in GROUPS[n:]}
    assert sum(line.endswith(":") and line.startswith("- ") for line in want.splitlines()) == len(kept_groups)

    e = encode(tok, parts, [("label", "Yes")], max_len=budget + 1, chat=False, weight=lambda k: 1.0)
    assert tok.decode(e.input_ids[:e.n_prompt]) == want and e.n_dropped == n
    ids, _, dropped = build_contexts(tok, [parts], chat=False, budget=budget)
    assert tok.decode(ids[0]) == want and dropped == [n]
    text, kept, q_dropped = fit_fewshot(tok, [], parts, chat=False, marker="Answer:", budget=budget)
    assert text == want and (kept, q_dropped) == (0, n)


def test_items_render_already_dropped_are_never_restored():
    parts = grouped(dropped=2)
    text, n = fit_prompt(parts, 10_000, len)
    assert n == 2 and "Asthma" not in text and "- (2 earlier diagnoses not shown)" in text


def test_a_stored_prompt_that_its_parts_do_not_give_is_refused():
    ex, _ = toy_data(n=4, seed=1)
    row = ex.row(0, named=True)
    assert isinstance(prompt_parts(row), PromptParts)
    with pytest.raises(InputError, match="differs from its parts"):
        prompt_parts({**row, "prompt": row["prompt"].replace("Sex:", "Gender:")}, "subject_id 1")
    text_only = {k: v for k, v in row.items() if k != "header"}
    assert prompt_parts(text_only) == row["prompt"]


def test_a_text_without_parts_is_kept_whole_or_refused(tok):
    ex, _ = toy_data(n=4, seed=1)
    prompt = ex["prompt"][0]
    e = encode(tok, prompt, [("label", "No")], max_len=1000, chat=False, weight=lambda k: 1.0)
    assert tok.decode(e.input_ids[:e.n_prompt]) == prompt and e.n_dropped == 0
    with pytest.raises(InputError, match="no structured parts"):
        encode(tok, prompt, [("label", "No")], max_len=n_tokens(tok, prompt) - 3, chat=False, weight=lambda k: 1.0)


def test_the_task_prefix_counts_against_the_budget(tok):
    parts = dataclasses.replace(grouped(), template=get_template("chronological"))
    budget = n_tokens(tok, assemble(parts)[0])
    plain = build_contexts(tok, [parts], chat=False, budget=budget)[2]
    prefixed = build_contexts(tok, [parts], chat=False, budget=budget, prefix="[label] ")[2]
    assert plain == [0] and prefixed[0] > 0
