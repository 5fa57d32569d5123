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
