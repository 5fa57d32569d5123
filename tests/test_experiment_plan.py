"""Planning the grid: counts per preset, content-addressed sharing, stable ids, fixed test set."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from rationale_sft import config as cfglib
from rationale_sft.config import ConfigError
from rationale_sft.config.experiment import ExperimentConfig
from rationale_sft.errors import InputError
from rationale_sft.experiment.jobs import fixed_test_set, used_labels
from rationale_sft.experiment.plan import plan

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def load(name: str, *overrides: str) -> ExperimentConfig:
    return cfglib.load(ExperimentConfig, CONFIGS / f"{name}.yaml", list(overrides))


def kinds(p) -> Counter:
    return Counter(j.fn.split(":")[1] for j in p.jobs)


@pytest.mark.parametrize("name", ["cpu_full", "paper"])
def test_full_designs_have_504_fine_tuning_runs(name):
    p = plan(load(name), CONFIGS)
    assert kinds(p)["sft"] == 504
    runs = [j for j in p.runs if j.fn.endswith(":sft")]
    levels = Counter((j.kwargs["meta"]["arm"], j.kwargs["meta"]["model"]) for j in runs)
    assert len(levels) == 3 * 7 and set(levels.values()) == {4 * 6}


def test_quick_preset_meets_the_demo_design():
    cfg = load("quick")
    assert len(cfg.grid.arms) == 3 and len(cfg.grid.models) >= 1 and len(cfg.grid.scales) >= 2
    assert max(cfg.grid.scales) >= 4 * min(cfg.grid.scales)  # data scales at least 4x apart
    assert len(cfg.grid.seeds) >= 2 and cfg.fewshot.enabled and cfg.train.steps > 0
    p = plan(cfg, CONFIGS)
    assert kinds(p)["cohort"] == kinds(p)["render"] == kinds(p)["rationales"] == 1
    assert kinds(p)["baselines"] == len(cfg.grid.scales) * len(cfg.grid.seeds)


def test_shared_artifacts_are_built_once_and_ids_are_stable():
    a, b = plan(load("quick"), CONFIGS), plan(load("quick"), CONFIGS)
    assert [j.id for j in a.jobs] == [j.id for j in b.jobs]
    bases = {j.kwargs["base_job"] for j in a.runs}
    assert len(bases) == len(load("quick").grid.models) + 1  # one per level; the few-shot model is SmolLM2
    changed = plan(load("quick", "train.lr=5e-4"), CONFIGS)
    same = {j.id for j in a.jobs} & {j.id for j in changed.jobs}
    assert {j.fn.split(":")[1] for j in a.jobs if j.id not in same} == {"sft"}


def test_label_only_grid_builds_no_rationales():
    p = plan(load("smoke", "grid.arms=[label_only]", "fewshot.demos=[label_only]"), CONFIGS)
    assert "rationales" not in kinds(p) and "rationales" not in p.index


def test_bad_grid_values_fail_before_planning():
    with pytest.raises(ConfigError, match="grid.scales must be >= 10"):
        load("smoke", "grid.scales=[5]")
    with pytest.raises(ConfigError, match="unknown key 'grid.seed'"):
        load("smoke", "grid.seed=[1]")


def labels_fixture() -> pl.DataFrame:
    ids = list(range(100))
    return pl.DataFrame({"subject_id": ids, "boolean_value": [i % 10 == 0 for i in ids],
                         "split": ["held_out" if i < 60 else "train" if i < 90 else "tuning" for i in ids]})


def test_test_set_keeps_every_case_and_is_seeded():
    table = labels_fixture()
    t = fixed_test_set(table, 2.0, 1000, seed=3)
    assert t["boolean_value"].sum() == 6 and t.height == 18
    assert t.equals(fixed_test_set(table, 2.0, 1000, seed=3)) and not t.equals(fixed_test_set(table, 2.0, 1000, seed=4))
    capped = fixed_test_set(table, None, 30, seed=3)
    assert capped.height <= 30 and capped["boolean_value"].sum() == 3
    assert set(t["split"]) == {"held_out"}


def test_used_labels_are_subsets_tuning_and_test():
    table = labels_fixture()
    subsets = pl.DataFrame({"subject_id": [60, 61, 70], "scale": [2, 2, 3], "seed": [0, 0, 0]})
    used = used_labels(table, subsets, fixed_test_set(table, 1.0, 1000, seed=0))
    counts = dict(used.group_by("split").len().iter_rows())
    assert counts == {"train": 3, "tuning": 10, "held_out": 12}


def test_label_weights_split_the_weighted_arm_into_levels():
    p = plan(load("smoke", "grid.arms=[label_only,weighted]", "grid.label_weights=[3,30]"), CONFIGS)
    sft = [j for j in p.runs if j.fn.endswith(":sft")]
    got = sorted((j.kwargs["meta"]["arm"], j.kwargs["train"]["arm"], j.kwargs["train"]["label_weight"]) for j in sft)
    assert got == [("label_only", "label_only", 10.0), ("weighted_x3", "weighted", 3.0),
                   ("weighted_x30", "weighted", 30.0)]
    with pytest.raises(ConfigError, match="grid.label_weights needs the weighted arm"):
        load("smoke", "grid.label_weights=[3]")


def test_hidden_share_levels_get_their_own_data_and_share_the_bases():
    p = plan(load("smoke", "grid.hidden_shares=[0.0,1.0]"), CONFIGS)
    k = kinds(p)
    assert k["cohort"] == k["labels"] == k["render"] == k["rationales"] == 2 and k["base"] == k["corpus"] == 1
    shares = sorted({j.kwargs["meta"]["hidden_share"] for j in p.runs})
    assert shares == [0.0, 1.0] and len(p.runs) == 2 * 3
    cohorts = sorted(j.kwargs["synth"]["hidden_share"] for j in p.jobs if j.fn.endswith(":cohort"))
    assert cohorts == [0.0, 1.0]
    assert set(p.index["hidden_share_levels"]) == {"0", "1"} and p.index["cohort"] == \
        p.index["hidden_share_levels"]["0"]["cohort"]
    plain = plan(load("smoke"), CONFIGS)
    assert all("hidden_share" not in j.kwargs["meta"] for j in plain.runs)
    with pytest.raises(ConfigError, match=r"grid.hidden_shares must lie in \[0, 1\]"):
        load("smoke", "grid.hidden_shares=[1.5]")
    from rationale_sft.errors import InputError

    with pytest.raises(InputError, match="cannot apply to data.meds_dir"):
        plan(load("smoke", "grid.hidden_shares=[0.5]", "data.meds_dir=/tmp/x"), CONFIGS)


def test_knobs_preset_sweeps_hidden_share_and_label_weight():
    p = plan(load("knobs"), CONFIGS)
    arms = Counter(j.kwargs["meta"]["arm"] for j in p.runs)
    assert arms == {"label_only": 6, "freeform": 6, "weighted_x3": 6, "weighted_x30": 6}
    assert sorted({j.kwargs["meta"]["hidden_share"] for j in p.runs}) == [0.0, 0.5, 1.0]


def test_every_run_gets_the_same_step_budget_across_arms_and_scales():
    p = plan(load("quick"), CONFIGS)
    sft = [j for j in p.runs if j.fn.endswith(":sft")]
    assert {j.kwargs["train"]["steps"] for j in sft} == {load("quick").train.steps}
    assert {j.kwargs["meta"]["arm"] for j in sft} == {"label_only", "freeform", "stepwise"}
    assert len({j.kwargs["scale"] for j in sft}) >= 2
    with pytest.raises(InputError, match="train.steps is 0"):
        plan(load("quick", "train.steps=0", "train.epochs=1"), CONFIGS)


def test_control_arms_get_the_rationales_of_their_teacher_mode():
    arms = "grid.arms=[label_only,freeform,shuffled_rationale,flipped_rationale,blind_rationale,segment_norm]"
    p = plan(load("smoke", arms), CONFIGS)
    teachers = {j.kwargs["teacher"]["mode"]: j.out_dir for j in p.jobs if j.fn.endswith(":rationales")}
    assert sorted(teachers) == ["blind", "conditioned", "flipped"] and kinds(p)["quality"] == 1
    assert p.index["rationales"] == teachers["conditioned"] and p.index["rationales_by_mode"] == teachers
    sft = {j.kwargs["meta"]["arm"]: j for j in p.runs if j.fn.endswith(":sft")}
    want = {"label_only": None, "freeform": teachers["conditioned"], "shuffled_rationale": teachers["conditioned"],
            "segment_norm": teachers["conditioned"], "flipped_rationale": teachers["flipped"],
            "blind_rationale": teachers["blind"]}
    assert {a: j.kwargs["rationales_dir"] for a, j in sft.items()} == want
    assert all(j.kwargs["train"]["steps"] == load("smoke").train.steps for j in sft.values())
    plain = plan(load("smoke"), CONFIGS)
    assert kinds(plain)["rationales"] == 1 and "rationales_by_mode" not in plain.index


def test_answer_stage_steps_come_out_of_the_run_budget():
    steps = load("smoke").train.steps
    with pytest.raises(InputError, match="answer_stage_steps=0"):
        plan(load("smoke", "grid.arms=[label_only,answer_stage]"), CONFIGS)
    p = plan(load("smoke", "grid.arms=[label_only,answer_stage]", "train.answer_stage_steps=1"), CONFIGS)
    run = next(j for j in p.runs if j.kwargs.get("meta", {}).get("arm") == "answer_stage")
    assert run.kwargs["train"]["steps"] == steps and run.kwargs["train"]["answer_stage_steps"] == 1


def test_mechanism_switches_change_only_the_run_jobs_and_leave_other_grids_alone():
    plain = plan(load("smoke"), CONFIGS)
    assert all("keep_checkpoints" not in j.kwargs["train"] and "layer_probes" not in j.kwargs
               for j in plain.runs if j.fn.endswith(":sft"))  # off: the arguments (so the ids) of before
    on = plan(load("smoke", "train.checkpoint_every=4", "train.keep_checkpoints=true", "layer_probes=true",
                   "train.conflict_every=2", "score.n_samples=2"), CONFIGS)
    changed = {j.fn.split(":")[1] for j in on.jobs if j.id not in {p.id for p in plain.jobs}}
    assert changed == {"sft", "fewshot"}  # few-shot runs read the shared score settings (n_samples)
    sft = [j for j in on.runs if j.fn.endswith(":sft")]
    assert all(j.kwargs["layer_probes"] and j.kwargs["train"]["keep_checkpoints"] for j in sft)


def test_mechanism_preset_plans_every_control_and_mitigation_once():
    cfg = load("mechanism")
    p = plan(cfg, CONFIGS)
    arms = {j.kwargs["meta"]["arm"] for j in p.runs}
    assert {"label_only", "freeform", "shuffled_rationale", "flipped_rationale", "blind_rationale", "segment_norm",
            "answer_stage", "weighted", "padded_label_only"} <= arms and not cfg.fewshot.enabled
    assert cfg.layer_probes and cfg.train.keep_checkpoints and cfg.train.conflict_every and cfg.score.n_samples
    quick = load("quick")
    assert (cfg.data, cfg.pretrain, cfg.render, cfg.vocab_size, cfg.teacher) == \
        (quick.data, quick.pretrain, quick.render, quick.vocab_size, quick.teacher)
    shared = ("steps", "micro_batch", "grad_accum", "max_len", "lr", "bf16")
    assert [getattr(cfg.train, k) for k in shared] == [getattr(quick.train, k) for k in shared]
    assert set(cfg.grid.scales) <= set(quick.grid.scales)  # the budget and data where the demo's students pass
    assert kinds(p)["base"] == 1 and {j.id for j in p.jobs if j.fn.endswith(":base")} <= \
        {j.id for j in plan(quick, CONFIGS).jobs}  # the demo's pretrained base, built once for both


def test_an_edited_template_replans_the_prompts_and_everything_built_on_them(monkeypatch):
    from rationale_sft.render import templates

    quick = load("quick")
    before = plan(quick, CONFIGS)
    edited = dataclasses.replace(templates.TEMPLATES["recap_factors"], question_block=templates.TEMPLATES[
        "recap_factors"].question_block.replace("Protective factors in the record", "Protective factors"))
    monkeypatch.setitem(templates.TEMPLATES, "recap_factors", edited)
    after = {j.id for j in plan(quick, CONFIGS).jobs}
    changed = {j.fn.split(":")[1] for j in before.jobs if j.id not in after}
    assert {"render", "rationales", "corpus", "base"} <= changed and not {"cohort", "labels", "baselines"} & changed
    assert all(j.id not in after for j in before.runs)  # every run reads the prompts


def test_a_new_knowledge_teacher_wording_or_base_replans_the_rationales_and_what_uses_them(monkeypatch, tmp_path):
    from rationale_sft.config.experiment import ModelSpec
    from rationale_sft.rationales import knowledge

    quick = load("quick")  # from-scratch base, pretrained on the knowledge teacher's corpus
    real = dataclasses.replace(quick, grid=dataclasses.replace(
        quick.grid, models=[ModelSpec(checkpoint="smollm2-135m-instruct")]),
        fewshot=dataclasses.replace(quick.fewshot, enabled=False))  # a real checkpoint: no corpus
    plain = dataclasses.replace(real, render=dataclasses.replace(real.render, template="recap"))  # no factors line
    grids = {"quick": quick, "real": real, "plain": plain}
    before = {grid: plan(cfg, CONFIGS) for grid, cfg in grids.items()}
    edited = tmp_path / "kb.yaml"
    edited.write_text(knowledge.KNOWLEDGE_BASE.read_text() + "\n# edited\n")
    for name, value in (("PHRASING_VERSION", knowledge.PHRASING_VERSION + 1), ("KNOWLEDGE_BASE", edited)):
        for grid, cfg in grids.items():
            with monkeypatch.context() as m:
                m.setattr(knowledge, name, value)
                after = {j.id for j in plan(cfg, CONFIGS).jobs}
            old = before[grid]
            changed = {j.fn.split(":")[1] for j in old.jobs if j.id not in after}
            label_only = {j.id for j in old.runs if j.kwargs.get("meta", {}).get("arm") == "label_only"}
            assert label_only and {"rationales", "quality"} <= changed, (name, grid)
            assert not {"cohort", "labels"} & changed, (name, grid)
            # the knowledge module words the factors line of recap_factors prompts: they and every run are new
            assert ("render" in changed) == (grid != "plain") and bool(label_only & after) == (grid == "plain")
            if grid == "quick":  # the corpus holds the teacher's texts: it and the base are new
                assert {"corpus", "base"} <= changed, name
            else:  # a real checkpoint needs no corpus; label-only runs on plain prompts read no rationales
                assert "corpus" not in kinds(old) and (grid == "real" or label_only <= after), name


def test_a_job_function_that_no_longer_takes_its_arguments_fails_the_plan(monkeypatch):
    from rationale_sft.experiment import jobs

    def labels(out_dir, root, meds, task, scales, seeds, controls_per_case, test_controls_per_case, test_max):
        """The labels job without its ``seed`` argument."""

    monkeypatch.setattr(jobs, "labels", labels)
    with pytest.raises(InputError, match=r"job test_experiment_plan:.*labels: its arguments do not match the "
                                         r"function \(got an unexpected keyword argument 'seed'\)"):
        plan(load("smoke"), CONFIGS)
