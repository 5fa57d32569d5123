"""What a grid costs: per stage, tokens to train, prefill and decode, and device-hours (``run --plan --cost``).

Token counts come from the plan (steps x micro-batch x accumulation x sequence length; scored subjects x prompt
length; x max new tokens for decode). Each count is marked by what its lengths rest on: ``exact`` (config
arithmetic only), ``measured`` (a finished job's own record, or the mean token length of the rendered prompts
and rationales already under the grid's run directory) or ``bound`` (an upper bound from max_len,
max_new_tokens or test_max, used while those files do not exist). Times follow ``experiment/devices.py``.
docs/cost.md explains the model and compares it with measured runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from rationale_sft import rundir
from rationale_sft.config.experiment import ExperimentConfig
from rationale_sft.errors import InputError
from rationale_sft.experiment import devices
from rationale_sft.experiment.devices import Device, ModelSize

STAGES = ("pretrain", "train", "score", "fewshot", "teacher")
"Stages priced, in the order a grid runs them."

MARKS = ("exact", "measured", "bound")
"How a count was obtained, weakest last: a sum is as weak as its weakest part."

ANSWER_TOKENS = 4
"Tokens of the answer marker and label word after a target (' Answer: Yes' and an end token), about."


def weakest(*marks: str) -> str:
    """The weakest of ``marks`` (``MARKS`` order); none: exact.

    >>> weakest("exact", "bound", "measured"), weakest()
    ('bound', 'exact')
    """
    return max(marks, key=MARKS.index, default="exact")


@dataclass(frozen=True)
class Item:
    """The tokens and device seconds of one job (or one pretraining stage of a base)."""

    stage: str
    "One of STAGES."
    job: str
    "The job as a person names it."
    params: int
    "Parameters of the model that runs it."
    train: float = 0.0
    "Tokens trained on (forward and backward)."
    prefill: float = 0.0
    "Prompt tokens read in forward passes."
    decode: float = 0.0
    "Tokens generated one KV-cached step at a time."
    seconds: float = 0.0
    "Estimated seconds on the device."
    mark: str = "exact"
    "How its counts were obtained (MARKS): the weakest of its lengths."
    done: bool = False
    "The job has already finished under the run directory (a relaunch skips it)."


@dataclass
class Estimate:
    """Every priced job of a grid on one device."""

    device: Device
    items: list[Item] = field(default_factory=list)

    def by_stage(self) -> dict[str, dict]:
        """Per stage: jobs, tokens (train, prefill, decode), seconds and the weakest mark; stages without jobs
        are left out."""
        out: dict[str, dict] = {}
        for it in self.items:
            s = out.setdefault(it.stage, {"jobs": 0, "train": 0.0, "prefill": 0.0, "decode": 0.0, "seconds": 0.0,
                                          "left": 0.0, "mark": "exact"})
            s["jobs"] += 1
            s["left"] += 0.0 if it.done else it.seconds
            for k in ("train", "prefill", "decode", "seconds"):
                s[k] += getattr(it, k)
            s["mark"] = weakest(s["mark"], it.mark)
        return {k: out[k] for k in STAGES if k in out}


class Lengths:
    """Mean token lengths of what a grid has already written under its run directory (None where missing)."""

    def __init__(self, out_dir: Path | None):
        self.out_dir = out_dir
        self._tok: dict[str, object] = {}
        self._means: dict[tuple, float | None] = {}

    def done(self, rel: str) -> Path | None:
        """The finished job directory ``rel`` under the run directory, or None."""
        path = self.out_dir / rel if self.out_dir else None
        return path if path and rundir.is_done(path) else None

    def json(self, rel: str, name: str) -> dict | None:
        """A finished job's ``name`` json record, or None."""
        path = self.done(rel)
        return rundir.read_json(path / name) if path and (path / name).is_file() else None

    def tokenizer(self, model_dir: Path | None):
        """A fast tokenizer from ``model_dir`` (no weights read), cached; None without one."""
        if model_dir is None or not (model_dir / "tokenizer.json").is_file():
            return None
        key = str(model_dir)
        if key not in self._tok:
            from tokenizers import Tokenizer

            self._tok[key] = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        return self._tok[key]

    def mean(self, tok, rel: str, file: str, column: str, **where) -> float | None:
        """Mean token length of ``column`` in a finished job's parquet ``file`` over rows matching ``where``."""
        path = self.done(rel)
        if tok is None or path is None or not (path / file).is_file():
            return None
        key = (id(tok), rel, file, column, tuple(sorted(where.items())))
        if key not in self._means:
            import polars as pl

            rows = pl.read_parquet(path / file, columns=[column, *where])
            for k, v in where.items():
                rows = rows.filter(pl.col(k) == v)
            texts = rows[column].drop_nulls().to_list()
            enc = tok.encode_batch(texts, add_special_tokens=False) if texts else []
            self._means[key] = sum(len(e.ids) for e in enc) / len(enc) if enc else None
        return self._means[key]

    def test_count(self, labels_rel: str) -> int | None:
        """Subjects in the fixed test set once the labels job has written it."""
        path = self.done(labels_rel)
        if path is None or not (path / "test.parquet").is_file():
            return None
        import polars as pl

        return pl.scan_parquet(path / "test.parquet").select(pl.len()).collect().item()

    def generated(self, rel: str) -> float | None:
        """Mean generated tokens per scored subject of a finished run (scores.parquet), or None."""
        path = self.done(rel)
        if path is None or not (path / "scores.parquet").is_file():
            return None
        import polars as pl

        col = pl.read_parquet(path / "scores.parquet", columns=["n_generated_tokens"])["n_generated_tokens"]
        return float(col.mean()) if len(col) else None


def estimate(cfg: ExperimentConfig, p, out_dir: str | Path | None, device: Device,
             lengths: Lengths | None = None) -> Estimate:
    """Price every job of the plan ``p`` of ``cfg`` on ``device``; lengths measured under ``out_dir`` when there
    (pass ``lengths`` to reuse one already read, when pricing several devices)."""
    ctx = _Context(cfg, p, lengths or Lengths(Path(out_dir) if out_dir else None), device)
    est = Estimate(device)
    for job in p.jobs:
        if job.function in PRICERS:
            done = ctx.lengths.done(job.out_dir) is not None
            est.items += [replace(it, done=done) for it in PRICERS[job.function](ctx, job)]
    return est


_SIZES: dict[tuple, tuple[ModelSize, Path | None]] = {}
"Model settings -> (size, checkpoint dir): a size is read from a config once per process."


class _Context:
    """What pricing a job needs besides the job: the grid, its lengths, the device and the models' sizes."""

    def __init__(self, cfg: ExperimentConfig, p, lengths: Lengths, device: Device):
        self.cfg, self.lengths, self.device = cfg, lengths, device
        self.bases = {j.out_dir: j for j in p.jobs if j.function == "base"}

    def model(self, model: dict, base_rel: str | None = None) -> tuple[ModelSize, Path | None]:
        """(size, directory holding its tokenizer or None) of a base's model settings, or of a checkpoint."""
        key = (model.get("family"), model.get("size"), model.get("checkpoint"), model.get("vocab_size"))
        if key not in _SIZES:
            if model.get("checkpoint"):
                cfg, path = checkpoint_config(model["checkpoint"])
            else:
                from rationale_sft.models.families import model_config
                from rationale_sft.models.tokenizer import SPECIAL_IDS

                cfg, path = model_config(model["family"], model["size"], model["vocab_size"], SPECIAL_IDS), None
            _SIZES[key] = (devices.model_size(cfg), path)
        size, path = _SIZES[key]
        if path is None and base_rel:
            record = self.lengths.json(base_rel, "base.json")
            path = (self.lengths.out_dir / base_rel / record["path"]).resolve() if record else None
        return size, path

    def base(self, base_rel: str) -> tuple[ModelSize, Path | None]:
        """The model of the base job at ``base_rel``."""
        return self.model(self.bases[base_rel].kwargs["model"], base_rel)

    def test_n(self, labels_rel: str) -> tuple[int, str]:
        """Subjects in the fixed test set: counted once labels exist, else ``data.test_max`` (or the held-out
        share of the synthetic cohort) as a bound."""
        n = self.lengths.test_count(labels_rel)
        if n is not None:
            return n, "measured"
        data = self.cfg.data
        held = 1.0 - data.synth.train_share - data.synth.tuning_share
        return data.test_max or math.ceil(held * data.synth.n_subjects), "bound"


def checkpoint_config(name: str):
    """(transformers config, directory) of a real checkpoint from its config.json; no weights are read."""
    from transformers import AutoConfig

    from rationale_sft.models import hub

    if name.lower() in hub.ALIASES:
        path = hub.converted_dir(name.lower())
        if not (path / "config.json").is_file():
            raise InputError(f"model {name!r}: its config.json exists once the alias is converted, at {path}; run "
                             f"the grid (its base job converts it first) or `rationale-sft validate` on a job using it")
    else:
        path = hub.resolve(name)
    return AutoConfig.from_pretrained(path), path


def pretrain_items(ctx: _Context, job) -> list[Item]:
    """A base's pretraining stages (none for a checkpoint, unless it continues on reasoning text): the tokens its
    stage logs record once the base exists, else steps x batch x seq_len, a bound with ``packing: documents``
    (rows end where their text does) and exact with ``packing: stream``."""
    from rationale_sft import config as cfglib
    from rationale_sft.config.model import BaseModelConfig

    bc = cfglib.build(BaseModelConfig, {"model": job.kwargs["model"], "pretrain": job.kwargs["pretrain"]})
    pc, m = bc.pretrain, bc.model
    size, model_dir = ctx.base(job.out_dir)
    logs = stage_dirs(model_dir, pc.full_steps > 0) if ctx.lengths.done(job.out_dir) and model_dir else {}
    stages = [] if m.checkpoint else [
        ("copy", pc.copy_steps, pc.short_batch_size, pc.short_seq_len, "documents"),
        ("short", pc.short_steps, pc.short_batch_size, pc.short_seq_len, "documents"),
        ("main", pc.steps, pc.batch_size, pc.seq_len, pc.packing),
        ("full", pc.full_steps, pc.batch_size, pc.seq_len, pc.packing)]
    if m.reasoning_base:
        stages.append(("reasoning", pc.reasoning_steps, pc.batch_size, pc.seq_len, pc.packing))
    name, items = m.checkpoint or f"{m.family}-{m.size}", []
    for what, steps, batch, seq, packing in stages:
        if not steps:
            continue
        tokens, mark = logged_tokens(logs.get(what)), "measured"
        if tokens is None:
            tokens, mark = float(steps * batch * seq), "exact" if packing == "stream" else "bound"
        seconds = devices.train_seconds(ctx.device, size, tokens, tokens / (steps * batch), steps, lora=False)
        items.append(Item("pretrain", f"{name} {what} stage", size.params, train=tokens, seconds=seconds, mark=mark))
    return items


def stage_dirs(model_dir: Path, full_stage: bool) -> dict[str, Path]:
    """Where ``models.pretrain`` leaves each stage of the base at ``model_dir`` (``base-<key>``): copy, short and
    main stages in ``base-<stage>-<key>`` beside it, the last stage in it."""
    key = model_dir.name.removeprefix("base-")
    out = {s: model_dir.parent / f"base-{s}-{key}" for s in ("copy", "short", "main")}
    return out | ({"full": model_dir} if full_stage else {"main": model_dir})


def logged_tokens(stage_dir: Path | None) -> float | None:
    """Tokens a pretraining stage trained on, from its ``pretrain_log.parquet`` (tokens/s x seconds between log
    rows); None without a log."""
    if stage_dir is None or not (stage_dir / "pretrain_log.parquet").is_file():
        return None
    import polars as pl

    log = pl.read_parquet(stage_dir / "pretrain_log.parquet", columns=["tokens_per_s", "elapsed_s"])
    return float((log["tokens_per_s"] * log["elapsed_s"].diff().fill_null(log["elapsed_s"][0])).sum())


def sft_items(ctx: _Context, job) -> list[Item]:
    """One SFT run: its training steps, then scoring the fixed test set (generating arms write a rationale)."""
    from rationale_sft.experiment.runs import sft_settings

    train, score = sft_settings(job.kwargs["train"], job.kwargs["score"], job.kwargs["seed"], job.kwargs["probe"])
    size, model_dir = ctx.base(job.kwargs["base_job"])
    train = replace(train, max_len=train.max_len or size.context)  # 0 = the model's context
    tok, L, dev = ctx.lengths.tokenizer(model_dir), ctx.lengths, ctx.device
    passes = train.steps * train.grad_accum
    rows = passes * train.micro_batch
    record = L.json(job.out_dir, "train.json")
    if record:
        tokens, mark = float(record["tokens_seen"]), "measured"
    else:
        per_row, mark = _train_row(train, L, tok, job)
        tokens = rows * per_row
    lora = train.lora.enabled
    items = [Item("train", job.name, size.params, train=tokens, mark=mark,
                  seconds=devices.train_seconds(dev, size, tokens, tokens / max(rows, 1), passes, lora))]
    return items + [_score_item(ctx, job, score, size, tok, train)]


def _train_row(train, L: Lengths, tok, job) -> tuple[float, str]:
    """Mean tokens of one training row of the arm (measured from prompts and rationales), or max_len (bound)."""
    prompt = L.mean(tok, job.kwargs["render_dir"], "examples.parquet", "prompt", split="train")
    rationale = 0.0
    if train.arm != "label_only":
        style = train.arm if train.arm in ("freeform", "stepwise") else train.rationale_style
        rat = job.kwargs["rationales_dir"]
        rationale = L.mean(tok, rat, "rationales.parquet", "text", style=style, split="train") if rat else None
    if prompt is None or rationale is None:
        return float(train.max_len), "bound"
    if train.arm == "multitask":  # two rows per example: prompt + label, prompt + rationale
        return min(train.max_len, prompt + ANSWER_TOKENS) + min(train.max_len, prompt + rationale), "measured"
    return min(train.max_len, prompt + rationale + ANSWER_TOKENS), "measured"


def _score_item(ctx: _Context, job, score, size: ModelSize, tok, train) -> Item:
    """Scoring a run's test set: a prefill per subject (and per sampled rationale), and the decode of generating
    arms (max_new_tokens each, a bound, until the run has written scores.parquet)."""
    from rationale_sft.train.arms import SCORING

    L = ctx.lengths
    record = L.json(job.out_dir, "score.json")
    n, n_mark = (record["n"], "measured") if record else ctx.test_n(job.kwargs["labels_dir"])
    prompt = L.mean(tok, job.kwargs["render_dir"], "examples.parquet", "prompt", split="held_out")
    p_mark = "measured" if prompt is not None else "bound"
    prompt = prompt if prompt is not None else float(score.max_len or train.max_len)
    generating = (score.mode if score.mode != "auto" else SCORING[train.arm]) == "generate"
    passes = (1 + score.n_samples) if generating else 1
    gen, g_mark = _generated(L, job, score.max_new_tokens) if generating else (0.0, "exact")
    return _inference_item(ctx.device, "score", job.name, size, n, prompt, gen, passes, score.batch_size,
                           weakest(n_mark, p_mark, g_mark))


def _generated(L: Lengths, job, max_new: int) -> tuple[float, str]:
    """Mean generated tokens per subject: measured in a finished run, else max_new_tokens (bound)."""
    mean = L.generated(job.out_dir)
    return (mean, "measured") if mean is not None else (float(max_new), "bound")


def _inference_item(dev: Device, stage: str, label: str, size: ModelSize, n: int, prompt: float, gen: float,
                    passes: int, batch: int, mark: str) -> Item:
    """``passes`` rounds over ``n`` subjects in batches of ``batch``: a prefill of ``prompt`` tokens each, then
    ``gen`` decode steps (the batch shares each step's weight reads)."""
    batches = math.ceil(n / batch) * passes
    seconds = devices.prefill_seconds(dev, size, n * passes * prompt, prompt, batches)
    if gen:
        seconds += devices.decode_seconds(dev, size, batches * gen, min(batch, n), prompt + gen / 2)
    return Item(stage, label, size.params, prefill=n * passes * prompt, decode=n * passes * gen, seconds=seconds,
                mark=mark)


def fewshot_items(ctx: _Context, job) -> list[Item]:
    """A few-shot run: k demonstrations and the subject's prompt in context, per scored subject."""
    from rationale_sft.experiment.runs import fewshot_settings

    fs, score = fewshot_settings(job.kwargs["settings"], job.kwargs["score"])
    size, model_dir = ctx.base(job.kwargs["base_job"])
    L, tok = ctx.lengths, ctx.lengths.tokenizer(model_dir)
    record = L.json(job.out_dir, "fewshot.json")
    if record:
        n, context, mark = record["n"], record["mean_prompt_tokens"], "measured"
    else:
        n, mark = ctx.test_n(job.kwargs["labels_dir"])
        n = min(n, fs.subset) if fs.subset else n
        context, c_mark = _fewshot_context(L, tok, job, fs, size, ctx.cfg.train.max_len or size.context)
        mark = weakest(mark, c_mark)
    gen, g_mark = _generated(L, job, score.max_new_tokens) if fs.with_rationales else (0.0, "exact")
    return [_inference_item(ctx.device, "fewshot", job.name, size, n, context, gen, 1, score.batch_size,
                            weakest(mark, g_mark))]


def _fewshot_context(L: Lengths, tok, job, fs, size: ModelSize, row: int) -> tuple[float, str]:
    """Mean few-shot prompt tokens from the rendered prompts (and rationales), else a bound: k + 1 rows as long
    as a training row (train.max_len), within the prompt budget (fewshot.max_len, else the model's context)."""
    render, rat = job.kwargs["render_dir"], job.kwargs["rationales_dir"]
    demo = L.mean(tok, render, "examples.parquet", "prompt", split=fs.pool_split)
    test = L.mean(tok, render, "examples.parquet", "prompt", split="held_out")
    extra = L.mean(tok, rat, "rationales.parquet", "text", style=fs.rationale_style) if fs.with_rationales else 0.0
    budget = fs.max_len or size.context
    if None in (demo, test, extra):
        return float(min(budget, (fs.k + 1) * row)), "bound"
    return min(budget, fs.k * (demo + extra + ANSWER_TOKENS) + test), "measured"


def teacher_items(ctx: _Context, job) -> list[Item]:
    """Local teacher rationales (backend hf): a prefill and up to max_new_tokens per example and style. The
    knowledge writer runs no model and an openai server's cost is not this grid's; both cost nothing here."""
    from rationale_sft import config as cfglib
    from rationale_sft.config.teacher import TeacherConfig

    teacher = cfglib.build(TeacherConfig, job.kwargs["teacher"])
    if teacher.backend != "hf":
        return [Item("teacher", f"rationales {teacher.mode} ({teacher.backend}: no local model)", 0)]
    size, model_dir = ctx.model({"checkpoint": teacher.model})
    L, tok, render = ctx.lengths, ctx.lengths.tokenizer(model_dir), job.kwargs["render_dir"]
    counts = [L.mean(tok, render, "examples.parquet", "prompt", split=s) for s in teacher.splits]
    n, prompt, mark = _teacher_examples(ctx, render, teacher.splits), None, "bound"
    if n is not None and None not in counts:
        prompt, mark = sum(counts) / len(counts), "measured"
    n = (n if n is not None else ctx.cfg.data.synth.n_subjects) * len(teacher.styles)
    prompt = prompt if prompt is not None else float(size.context)
    done = L.done(job.out_dir)
    gen = L.mean(tok, job.out_dir, "rationales.parquet", "text") if done else None
    gen, g_mark = (gen, "measured") if gen is not None else (float(teacher.max_new_tokens), "bound")
    return [_inference_item(ctx.device, "teacher", f"rationales {teacher.mode} ({teacher.model})", size, n, prompt,
                            gen, 1, teacher.batch_size, weakest(mark, g_mark))]


def _teacher_examples(ctx: _Context, render_rel: str, splits) -> int | None:
    """Rendered examples in the teacher's splits, once the prompts exist."""
    path = ctx.lengths.done(render_rel)
    if path is None:
        return None
    import polars as pl

    return pl.scan_parquet(path / "examples.parquet").filter(pl.col("split").is_in(list(splits))).select(
        pl.len()).collect().item()


def human(x: float) -> str:
    """A count in the units a person reads: k, M, B, T.

    >>> human(0), human(950), human(1_698_650), human(3.2e9)
    ('0', '950', '1.70M', '3.20B')
    """
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def hours(seconds: float) -> str:
    """Seconds as hours to 3 significant digits.

    >>> hours(5706), hours(36), hours(1.15e5)
    ('1.58', '0.01', '31.9')
    """
    return f"{seconds / 3600:.3g}"


def format_estimate(est: Estimate, name: str) -> str:
    """The per-stage table of an estimate, its total, and what its marks and device figures rest on."""
    dev = est.device
    kind = "measured" if dev.measured else "estimate"
    lines = [f"cost of grid {name!r} on {dev.name}: {dev.description} ({kind}: {dev.source})",
             f"{'stage':<9} {'jobs':>5} {'params':>13} {'train tok':>10} {'prefill tok':>11} {'decode tok':>10} "
             f"{'hours':>9} {'left':>9}  counts"]
    stages = est.by_stage()
    for stage, s in stages.items():
        params = sorted({it.params for it in est.items if it.stage == stage and it.params})
        shown = "-" if not params else human(params[0]) + (f"-{human(params[-1])}" if len(params) > 1 else "")
        lines.append(f"{stage:<9} {s['jobs']:>5} {shown:>13} {human(s['train']):>10} {human(s['prefill']):>11} "
                     f"{human(s['decode']):>10} {hours(s['seconds']):>9} {hours(s['left']):>9}  {s['mark']}")
    total = {k: sum(s[k] for s in stages.values()) for k in ("train", "prefill", "decode", "seconds", "left")}
    lines.append(f"{'total':<9} {len(est.items):>5} {'':>13} {human(total['train']):>10} "
                 f"{human(total['prefill']):>11} {human(total['decode']):>10} {hours(total['seconds']):>9} "
                 f"{hours(total['left']):>9}  {weakest(*(s['mark'] for s in stages.values()))}")
    lines.append("hours: every job of the grid; left: those not yet finished under the run directory")
    lines.append("not priced: cohort, labels, prompts, baselines, the knowledge teacher and the report (no model "
                 "passes), gradient-conflict steps and layer probes")
    lines.append("counts: exact = config arithmetic; measured = lengths from this grid's files under its run "
                 "directory; bound = upper bound from max_len / max_new_tokens / test_max (files not there yet)")
    return "\n".join(lines)


def device_table(cfg: ExperimentConfig, p, lengths: Lengths) -> str:
    """Every device's figures and the grid's total hours on it (the cpu row needs its measured figures)."""
    totals = {}
    for name in devices.DEVICES:
        try:
            totals[name] = sum(it.seconds for it in estimate(cfg, p, None, devices.get_device(name), lengths).items)
        except InputError:
            continue
    lines = [f"{'device':<6} {'peak bf16':>14} {'bandwidth':>12} {'total hours':>12}  figures"]
    for name in devices.DEVICES:
        try:
            dev = devices.get_device(name)
        except InputError:
            lines.append(f"{name:<6} {'':>11} {'':>10} {'-':>12}  not measured on this machine")
            continue
        lines.append(f"{name:<6} {dev.peak_flops / 1e12:>6.1f} TFLOP/s {dev.bandwidth / 1e9:>7,.0f} GB/s "
                     f"{hours(totals[name]):>12}  {'measured' if dev.measured else 'estimate'}: {dev.description}")
    return "\n".join(lines)


PRICERS = {"base": pretrain_items, "sft": sft_items, "fewshot": fewshot_items, "rationales": teacher_items}
"Job function -> the items it costs; every other job (cohort, labels, render, baselines, ...) runs no model."
