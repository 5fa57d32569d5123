"""validate on a grid config: every preset passes (paper.yaml names its missing checkpoints), and a bad grid's
problems are found in the jobs of its plan, before any compute, each listed once with the jobs it affects."""

import json
from pathlib import Path

import pytest

from rationale_sft.cli import main
from rationale_sft.cli.validate import is_grid
from rationale_sft.config import read_yaml
from rationale_sft.train.toy import toy_data, toy_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMOKE = str(CONFIGS / "smoke.yaml")


def report(capsys, *args) -> tuple[int, dict]:
    code = main(["validate", *args, "--json"])
    return code, json.loads(capsys.readouterr().out.rsplit("\n", 2)[0])


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem != "paper"))
def test_every_preset_validates(preset, capsys):
    code = main(["validate", str(CONFIGS / f"{preset}.yaml")])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[-1] == "ok", out
    assert out[-2].startswith(f"grid {read_yaml(CONFIGS / f'{preset}.yaml')['name']}: ")


def test_paper_names_the_checkpoints_it_lacks(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty hub cache
    code, rep = report(capsys, str(CONFIGS / "paper.yaml"))
    assert code == 1 and len(rep["problems"]) == 7
    assert all(p.startswith("grid.models[") and "not in the local Hugging Face cache" in p for p in rep["problems"])
    assert rep["runs"] == 522 and rep["by_kind"]["sft"] == 504


def test_problems_of_the_runs_are_listed_once_with_their_jobs(capsys):
    code, rep = report(capsys, SMOKE, "score.max_new_tokens=5000", "grid.seeds=[0,1]",
                       "grid.models=[{family: llama, size: xs, lora: true}]", "lora.target_modules=[q_proj, nope]")
    assert code == 1
    room = [p for p in rep["problems"] if "score.max_new_tokens=5000 leaves no room" in p]
    lora = [p for p in rep["problems"] if "['nope'] match no linear layer of this llama" in p]
    assert len(room) == 1 and room[0].startswith("2 jobs (sft freeform llama-xs scale 30 seed 0, sft freeform llama-xs "
                                                 "scale 30 seed 1): ")
    assert len(lora) == 1 and lora[0].startswith(
        "4 jobs (sft label_only llama-xs scale 30 seed 0, sft label_only llama-xs scale 30 seed 1, sft freeform "
        "llama-xs scale 30 seed 0 and 1 more): train.lora.target_modules ['nope'] match no linear layer")


def test_a_checkpoint_base_is_checked_against_its_files(capsys, tmp_path):
    ex, rat = toy_data(n=8, seed=2)
    ckpt = toy_model(tmp_path / "ckpt", ex["prompt"].to_list() + rat["text"].to_list(), vocab_size=300)
    ctx = json.loads((ckpt / "config.json").read_text())["max_position_embeddings"]
    code, rep = report(capsys, SMOKE, f"grid.models=[{{family: llama, size: xs, checkpoint: {ckpt}}}]",
                       f"train.max_len={ctx + 1}", "fewshot.enabled=false")
    assert code == 1
    assert rep["problems"] == [
        f"2 jobs (sft label_only ckpt scale 30 seed 0, sft freeform ckpt scale 30 seed 0): train.max_len={ctx + 1} "
        f"exceeds the model's context of {ctx} tokens; set train.max_len <= {ctx}"]
    assert rep["by_kind"]["external"] == 1 and "fewshot" not in rep["by_kind"]


def test_unknown_keys_fail_as_for_a_run(capsys):
    assert main(["validate", SMOKE, "fewshot.setings.k=2"]) == 2
    assert "unknown key 'fewshot.setings' (did you mean 'settings'?)" in capsys.readouterr().err


def test_job_and_grid_yamls_are_told_apart():
    assert is_grid(read_yaml(CONFIGS / "smoke.yaml"))
    assert not is_grid({"examples": "e.parquet", "model": "m", "train": {"arm": "freeform"}, "fewshot": {"k": 2}})
