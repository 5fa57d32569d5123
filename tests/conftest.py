"""Shared pytest settings (keep torch and BLAS to the machine's two cores, headless plotting) and fixtures."""

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def killed_train(monkeypatch):
    """``killed_train(n, *train_args)``: run ``train`` until its ``n``-th micro-batch forward, which raises
    KeyboardInterrupt as a kill would; the forward is restored afterwards, so the next ``train`` resumes."""
    from rationale_sft.train import loop

    def run(n: int, *train_args) -> None:
        real, calls = loop.token_losses, {"n": 0}

        def dies(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt("killed")
            return real(*args, **kwargs)

        monkeypatch.setattr(loop, "token_losses", dies)
        try:
            with pytest.raises(KeyboardInterrupt):
                loop.train(*train_args)
        finally:
            monkeypatch.setattr(loop, "token_losses", real)

    return run


@pytest.fixture
def bf16_cases(monkeypatch):
    """``bf16_cases(run)``: ``run(name, bf16)`` three times: float32; bf16 asked for on a device made to lack
    native bf16 (it must warn); bf16 on a device made to have it. Returns the three results in that order."""
    from rationale_sft import precision

    def cases(run):
        fp32 = run("fp32", False)
        monkeypatch.setattr(precision, "bf16_native", lambda device: False)
        with pytest.warns(UserWarning, match="no native bfloat16 arithmetic"):
            emulated = run("emulated", True)
        monkeypatch.setattr(precision, "bf16_native", lambda device: True)
        return fp32, emulated, run("native", True)

    return cases
