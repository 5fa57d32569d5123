"""The typed config machinery: YAML + overrides, strict keys and types, hashes, help texts."""

from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from rationale_sft import config as cfglib
from rationale_sft.config import ConfigError


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    "Peak learning rate."
    schedule: Literal["cosine", "linear"] = "cosine"
    "Learning-rate schedule."


@dataclass(frozen=True)
class Root:
    name: str = "demo"
    "Run name."
    seeds: tuple[int, ...] = (0, 1)
    "Seeds of the grid."
    optim: Optim = field(default_factory=Optim)
    "Optimizer settings."
    scale: int | None = None
    "Training subjects; null for all."


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\noptim:\n  lr: 1e-4\nseeds: [3]\n")
    cfg = cfglib.load(Root, path, ["optim.schedule=linear", "scale=500"])
    assert cfg == Root(name="x", seeds=(3,), optim=Optim(lr=1e-4, schedule="linear"), scale=500)


def test_every_problem_reported_at_once():
    with pytest.raises(ConfigError) as err:
        cfglib.build(Root, {"optim": {"lrr": 1, "schedule": "cosin"}, "seeds": ["a"], "scale": "big"})
    msg = str(err.value)
    assert "unknown key 'optim.lrr' (did you mean 'lr'?)" in msg
    assert "'optim.schedule' must be one of 'cosine', 'linear', got 'cosin' (did you mean 'cosine'?)" in msg
    assert "'seeds[0]' must be int" in msg
    assert "'scale' must be int or null, got str 'big'" in msg


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="'scale' must be int"):
        cfglib.build(Root, {"scale": True})


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="bad.yaml: top level must be a mapping"):
        cfglib.load(Root, bad)
    with pytest.raises(ConfigError, match="config file not found"):
        cfglib.load(Root, tmp_path / "missing.yaml")


def test_yaml_is_not_executed(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        cfglib.load(Root, path)


def test_roundtrip_and_hash():
    cfg = cfglib.build(Root, {"seeds": [1, 2]})
    again = cfglib.build(Root, yaml.safe_load(cfglib.to_yaml(cfg)))
    assert again == cfg
    assert cfglib.config_hash(cfg) == cfglib.config_hash(again)
    assert cfglib.config_hash(cfg) != cfglib.config_hash(cfglib.build(Root, {"seeds": [2, 1]}))


def test_describe_lists_help_texts():
    rows = {key: (default, text) for key, default, text in cfglib.describe(Root)}
    assert rows["optim.lr"] == ("0.001", "Peak learning rate.")
    assert rows["scale"] == ("None", "Training subjects; null for all.")
