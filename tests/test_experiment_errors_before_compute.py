"""Bad grid configs and inputs fail at `run --plan` (and before any job of `run`), one line, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rationale_sft import config as cfglib
from rationale_sft.config import ConfigError
from rationale_sft.config.experiment import ExperimentConfig
from rationale_sft.errors import InputError
from rationale_sft.experiment.checks import check_inputs
from meds_cases import fixture_rows, make

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMOKE = CONFIGS / "smoke.yaml"


def load(*overrides: str) -> ExperimentConfig:
    return cfglib.load(ExperimentConfig, SMOKE, list(overrides))


@pytest.mark.parametrize("override, match", [
    ("grid.seeds=[0,0]", r"grid.seeds has duplicate levels \[0\]"),
    ("grid.scales=[30,30]", r"grid.scales has duplicate levels \[30\]"),
    ("grid.arms=[label_only,freeform,label_only]", r"grid.arms has duplicate levels \['label_only'\]"),
    ("grid.models=[{family: llama, size: xs}, {family: llama, size: xs}]",
     r"grid.models has duplicate levels \['llama-xs'\]"),
    ("grid.hidden_shares=[0.2,0.2]", r"grid.hidden_shares has duplicate levels \[0.2\]"),
    ("fewshot.demos=[label_only,label_only]", r"fewshot.demos has duplicate levels \['label_only'\]"),
    ("grid.models=[{family: bert, size: xs}]", r"unknown model family 'bert'; valid families: llama, qwen2"),
    ("grid.models=[{family: llama, size: xl}]", r"unknown model size 'xl'; valid sizes: xs, s"),
    ("fewshot.models=[{family: lama, size: xs}]", r"unknown model family 'lama' \(did you mean 'llama'\?\)"),
    ("train.lr=-1e-4", r"'lr' must be > 0, got -0.0001"),
    ("train.lr=0", r"'lr' must be > 0, got 0"),
    ("pretrain.lr=-1", r"pretrain lr, reasoning_lr and full_lr must be > 0"),
    ("grid.seeds=[0,-1]", r"'grid.seeds\[1\]' must be a seed >= 0, got -1"),
    ("seed=-3", r"'seed' must be a seed >= 0, got -3"),
    ("train.seed=-1", r"'train.seed' must be a seed >= 0"),
    ("data.synth.world_seed=-2", r"'data.synth.world_seed' must be a seed >= 0"),
    ("train.arm=freeform", r"train.arm is set per run \(got 'freeform'\); list the arms in grid.arms"),
    ("train.seed=3", r"train.seed is set per run \(got 3\); list the run seeds in grid.seeds"),
    ("train.lora.enabled=true", r"train.lora is set per run \(got \{enabled: True\}\); set lora: true on a "
                                r"grid.models level"),
])
def test_bad_levels_fail_when_the_config_loads(override, match):
    with pytest.raises(ConfigError, match=match):
        load(override)


def test_label_weight_set_in_two_places():
    with pytest.raises(ConfigError, match=r"train.label_weight=5 and grid.label_weights=\[3.0\] both set"):
        load("grid.arms=[label_only, weighted]", "grid.label_weights=[3]", "train.label_weight=5")
    assert load("grid.arms=[label_only, weighted]", "train.label_weight=5").train.label_weight == 5


def test_checkpoint_models_take_any_family_and_size_label():
    cfg = load("grid.models=[{family: llama, size: 3b, checkpoint: some/where}]")
    assert cfg.grid.models[0].size == "3b"


def test_checkpoint_without_weights(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "llama"}')
    cfg = load(f"grid.models=[{{checkpoint: {tmp_path / 'ckpt'}}}]")
    with pytest.raises(InputError, match=r"grid.models\[0\]: model dir .*ckpt has config.json but no weights"):
        check_inputs(cfg, CONFIGS)


def test_uncached_hub_checkpoint_and_every_problem_at_once(tmp_path):
    cfg = load("grid.models=[{checkpoint: nobody/not-cached-model}]", f"data.meds_dir={tmp_path / 'nope'}")
    with pytest.raises(InputError) as err:
        check_inputs(cfg, CONFIGS)
    assert "not in the local Hugging Face cache" in str(err.value)
    assert f"data.meds_dir: {tmp_path / 'nope'}: not a MEDS directory" in str(err.value)


def test_relative_meds_dir_is_read_next_to_the_config(tmp_path):
    meds = make(tmp_path / "cfgdir", fixture_rows(), n_shards=1)
    cfg = load(f"data.meds_dir={meds.name}", "grid.scales=[11]", "grid.hidden_shares=[]")
    with pytest.raises(InputError, match="not a MEDS directory"):
        check_inputs(cfg, CONFIGS)
    with pytest.raises(InputError, match=r"grid.scales: scale 11 is larger than the train split \(10 subjects "
                                         r"in .*subject_splits.parquet\)"):
        check_inputs(cfg, meds.parent)
    check_inputs(load(f"data.meds_dir={meds.name}", "grid.scales=[10]"), meds.parent)


def test_scale_larger_than_the_synthetic_train_split():
    check_inputs(load("grid.scales=[30, 2400]"), CONFIGS)  # 0.8 x 3000 subjects: possible
    with pytest.raises(InputError, match=r"grid.scales: scale 2401 is larger than the train split of the "
                                         r"synthetic cohort \(2400 = 0.8 x 3000 subjects\)"):
        check_inputs(load("grid.scales=[30, 2401]"), CONFIGS)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rationale_sft.cli", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("override", ["grid.seeds=[0,0]", "grid.scales=[100000]", "data.meds_dir=/nonexistent",
                                      "grid.models=[{checkpoint: /nonexistent/ckpt}]"])
def test_plan_refuses_with_one_line(override, tmp_path):
    for extra in (["--plan"], ["--out", str(tmp_path / "run")]):
        proc = cli("run", str(SMOKE), *extra, override)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("rationale-sft run: error: ")
    assert not (tmp_path / "run").exists()  # nothing was computed or written
