"""Blinded annotation packets: N shuffled rationales with their histories, for browsers, spreadsheets and Label Studio.

``export_packet(cfg, rationales, examples, out_dir)`` writes, for raters::

    packet.html                 self-contained page (no external resources) that saves a JSON ratings file
    packet.csv                  one row per item for spreadsheet raters (fill rater and the three scores)
    labelstudio_tasks.json      Label Studio import: one task per item
    labelstudio_config.xml      Label Studio labelling config (Rating x3 + TextArea)

and, for the coordinator only (never send it to raters), ``private/id_map.json``: item id -> cache key,
subject, style, mode, backend, model, conclusion and label. Item ids are random-order serial numbers; the
rater files carry neither labels nor backend or model names.
"""

from __future__ import annotations

import csv
import html
import io
import json
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft.config.annotate import CRITERIA, ExportConfig
from rationale_sft.errors import InputError
from rationale_sft.rationales.specs import strip_answer_slot
from rationale_sft.rundir import hash_text, run_stage, write_json, write_text
from rationale_sft.seeding import rng
from rationale_sft.tables import read_parquet

RATER_FILES = ("packet.html", "packet.csv", "labelstudio_tasks.json", "labelstudio_config.xml")
ID_MAP = Path("private") / "id_map.json"
GROUP_COLUMNS = ("style", "mode", "backend", "model")
CSV_COLUMNS = ("item_id", "history", "rationale", "rater", *CRITERIA, "comment")
CRITERION_LABELS = {"accuracy": "Medical accuracy", "grounding": "Grounding", "relevance": "Relevance"}


def export_packet(cfg: ExportConfig, rationales: str | Path, examples: str | Path, out_dir: str | Path) -> Path:
    """Write a blinded packet of ``cfg.n`` rationales into ``out_dir``; return the HTML file."""
    out_dir = Path(out_dir)

    def work(d: Path) -> dict:
        items = select_items(cfg, _joined(Path(rationales), Path(examples)))
        packet_id = hash_text("\n".join(i["cache_key"] for i in items), 12)
        write_rater_files(cfg, items, packet_id, d)
        write_json(d / ID_MAP, {"packet_id": packet_id, "items": {i["item_id"]: _private(i) for i in items}})
        return {"packet": {"packet_id": packet_id, "n": len(items)}}

    run_stage(out_dir, work, cfg=cfg, seeds={"seed": cfg.seed},
              inputs={"rationales": Path(rationales), "examples": Path(examples)}, force=True)
    return out_dir / "packet.html"


def _joined(rationales: Path, examples: Path) -> pl.DataFrame:
    for path in (rationales, examples):
        if not path.is_file():
            raise InputError(f"file not found: {path}")
    rat = read_parquet(rationales)
    ex = read_parquet(examples)
    keys = ["subject_id", "prompt_hash"] if "prompt_hash" in rat.columns else ["subject_id"]
    for name, df, cols in (("rationales", rat, ["text", "cache_key", *keys]), ("examples", ex, ["prompt", *keys])):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise InputError(f"{rationales if name == 'rationales' else examples}: missing column(s) "
                             f"{', '.join(missing)} (see docs/contracts.md)")
    joined = rat.join(ex.select([*keys, "prompt", "label"]).unique(keys), on=keys, how="left")
    lost = joined.filter(pl.col("prompt").is_null())
    if lost.height:
        raise InputError(f"{lost.height} rationale(s) have no example in {examples} (first subject "
                         f"{lost['subject_id'][0]}); pass the examples.parquet the rationales were generated from")
    return joined


def select_items(cfg: ExportConfig, joined: pl.DataFrame) -> list[dict]:
    """Sample ``cfg.n`` rows without replacement (balanced over groups when ``cfg.stratify``), in random order,
    and number them R001, R002, ..."""
    if cfg.n > joined.height:
        raise InputError(f"n={cfg.n} but only {joined.height} rationales are available; set n <= {joined.height}")
    g = rng(cfg.seed, "annotate_sample")
    order = g.permutation(joined.height)
    if cfg.stratify:
        order = g.permutation(_round_robin(joined, order)[: cfg.n])
    order = order[: cfg.n]
    width = max(3, len(str(cfg.n)))
    rows = joined[order.tolist()].to_dicts()
    return [{**row, "item_id": f"R{k + 1:0{width}d}", "history": strip_answer_slot(row["prompt"])}
            for k, row in enumerate(rows)]


def _round_robin(joined: pl.DataFrame, order: np.ndarray) -> np.ndarray:
    """Row indices in ``order``, interleaved over groups: one of each group, then the second of each, ..."""
    cols = [c for c in GROUP_COLUMNS if c in joined.columns]
    groups = joined.select(cols).with_row_index("i")[order.tolist()] if cols else None
    if groups is None:
        return order
    rank = groups.with_columns(r=pl.int_range(pl.len()).over(cols)).with_row_index("pos")
    return rank.sort(["r", "pos"])["i"].to_numpy()


def _private(item: dict) -> dict:
    keep = ("cache_key", "subject_id", "prompt_hash", "style", "mode", "backend", "model", "conclusion", "label")
    return {k: item.get(k) for k in keep}


def write_rater_files(cfg: ExportConfig, items: list[dict], packet_id: str, out_dir: Path) -> None:
    """The four rater-facing files (blinded: item id, history and rationale only)."""
    public = [{"item_id": i["item_id"], "history": i["history"], "rationale": i["text"]} for i in items]
    write_text(out_dir / "packet.html", packet_html(cfg.title, packet_id, public))
    write_text(out_dir / "packet.csv", packet_csv(public))
    write_json(out_dir / "labelstudio_tasks.json", [{"data": {**p, "packet_id": packet_id}} for p in public])
    write_text(out_dir / "labelstudio_config.xml", labelstudio_config())


def packet_html(title: str, packet_id: str, items: list[dict]) -> str:
    """The self-contained HTML page; the items are embedded as JSON (``</`` escaped for the script tag).

    >>> page = packet_html("T", "p1", [{"item_id": "R001", "history": "</script>", "rationale": "x"}])
    >>> "<\\\\/script>" in page and "http" not in page.split("<body>")[1]
    True
    """
    data = json.dumps({"packet_id": packet_id, "items": items}, ensure_ascii=False).replace("</", "<\\/")
    template = resources.files("rationale_sft.annotate").joinpath("packet.html").read_text("utf-8")
    return template.replace("__TITLE__", html.escape(title)).replace("__DATA__", data)


def packet_csv(items: list[dict]) -> str:
    """The spreadsheet version: empty rater and score columns to fill in.

    >>> packet_csv([{"item_id": "R001", "history": "a,b", "rationale": "r"}]).splitlines()[1]
    'R001,"a,b",r,,,,,'
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for item in items:
        writer.writerow({**item, "rater": "", **{c: "" for c in CRITERIA}, "comment": ""})
    return buf.getvalue()


def labelstudio_config() -> str:
    """Label Studio labelling config: the history and rationale, three 1-5 ratings and a comment box."""
    ratings = "\n".join(f'  <Header value="{CRITERION_LABELS[c]}"/>\n'
                        f'  <Rating name="{c}" toName="rationale" maxRating="5" required="true"/>' for c in CRITERIA)
    return ("<View>\n"
            '  <Header value="Health history"/>\n  <Text name="history" value="$history"/>\n'
            '  <Header value="Rationale"/>\n  <Text name="rationale" value="$rationale"/>\n'
            f"{ratings}\n"
            '  <TextArea name="comment" toName="rationale" placeholder="Comment (optional)" maxSubmissions="1"/>\n'
            "</View>\n")
