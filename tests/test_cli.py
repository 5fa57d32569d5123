"""The command line: every verb has accurate --help, overrides may follow options, errors are one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rationale_sft.cli import VERBS, build_parser, main

GROUPS = {"cohort": ["synth", "extract"], "rationales": ["generate", "check"], "annotate": ["export", "import"]}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rationale_sft.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_every_verb_is_installed():
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    assert set(sub.choices) == set(VERBS)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_help_of_every_verb(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: rationale-sft {verb}")
    for action in GROUPS.get(verb, []):
        assert action in out
        with pytest.raises(SystemExit):
            main([verb, action, "--help"])
        assert capsys.readouterr().out.startswith(f"usage: rationale-sft {verb} {action}")


def test_overrides_may_follow_options_and_unknown_flags_fail(capsys):
    assert main(["run", "configs/smoke.yaml", "--plan", "grid.seeds=[0,1,2]"]) == 0
    assert '"runs": 9' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["run", "configs/smoke.yaml", "--plan", "--bogus"])
    assert exit_.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_user_errors_are_one_line_with_exit_code_2():
    proc = cli("run", "configs/smoke.yaml", "--plan", "grid.armz=[label_only]")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rationale-sft run: error: unknown key 'grid.armz' (did you mean 'arms'?); valid keys: arms, models, "
        "scales, seeds, hidden_shares, label_weights"]
    missing = cli("run", "configs/nope.yaml")
    assert missing.returncode == 2 and "config file not found: configs/nope.yaml" in missing.stderr
