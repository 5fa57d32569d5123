"""Annotation packets and rating import: blinding, file formats, validation, and hand-computed statistics."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from openai_server import write_examples

from rationale_sft.annotate.agreement import mean_interval, ordinal_alpha, weighted_kappa
from rationale_sft.annotate.packet import ID_MAP, export_packet
from rationale_sft.annotate.ratings import import_ratings
from rationale_sft.cli import main as cli
from rationale_sft.config import build
from rationale_sft.config.annotate import ExportConfig, ImportConfig
from rationale_sft.errors import InputError
from rationale_sft.rundir import read_json


VARIANT = {"freeform": "A", "stepwise": "B"}


def write_rationales(tmp: Path, n_subjects: int = 6) -> tuple[Path, Path]:
    """examples.parquet plus a contract-shaped rationales.parquet (two styles per subject)."""
    examples = write_examples(tmp / "examples.parquet", ["ok"] * n_subjects)
    ex = pl.read_parquet(examples)
    rows = [{"subject_id": r["subject_id"], "prediction_time": r["prediction_time"], "prompt_hash": r["prompt_hash"],
             "split": "train", "style": style, "mode": "conditioned", "backend": "secret-backend",
             "model": "secret-model", "spec_version": "1",
             "text": f"Subject {r['subject_id']} reasoning {VARIANT[style]}.\n"
                     f"Conclusion: {'likely' if r['label'] else 'unlikely'}",
             "conclusion": "Yes" if r["label"] else "No", "teacher_risk": None,
             "cache_key": f"key{r['subject_id']}{style}"}
            for r in ex.iter_rows(named=True) for style in ("freeform", "stepwise")]
    path = tmp / "rationales.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return path, examples


@pytest.fixture()
def packet(tmp_path):
    rationales, examples = write_rationales(tmp_path)
    export_packet(build(ExportConfig, {"n": 8, "seed": 3}), rationales, examples, tmp_path / "packet")
    return tmp_path / "packet"


def test_packet_is_blinded_shuffled_and_complete(packet, tmp_path):
    names = {p.relative_to(packet).as_posix() for p in packet.rglob("*") if p.is_file()}
    assert names == {"packet.html", "packet.csv", "labelstudio_tasks.json", "labelstudio_config.xml",
                     "private/id_map.json", "config.yaml", "manifest.json", "DONE"}
    id_map = read_json(packet / ID_MAP)
    assert sorted(id_map["items"]) == [f"R{i:03d}" for i in range(1, 9)]
    for name in ("packet.html", "packet.csv", "labelstudio_tasks.json"):
        text = (packet / name).read_text()
        assert "secret-backend" not in text and "secret-model" not in text and "key1" not in text
        assert '"label":' not in text and "conditioned" not in text and "freeform" not in text
    subjects = [v["subject_id"] for v in id_map["items"].values()]
    assert subjects != sorted(subjects)  # shuffled
    rows = list(csv.DictReader((packet / "packet.csv").open()))
    assert [r["item_id"] for r in rows] == sorted(id_map["items"])
    first = id_map["items"]["R001"]
    assert rows[0]["rationale"].startswith(f"Subject {first['subject_id']} reasoning {VARIANT[first['style']]}")
    assert rows[0]["history"].endswith("Question: Will this person develop dementia?")  # answer slot stripped
    again = tmp_path / "again"
    rationales, examples = tmp_path / "rationales.parquet", tmp_path / "examples.parquet"
    export_packet(build(ExportConfig, {"n": 8, "seed": 3}), rationales, examples, again)
    assert read_json(again / ID_MAP) == id_map  # same seed, same packet


def test_labelstudio_files(packet):
    tasks = json.loads((packet / "labelstudio_tasks.json").read_text())
    assert len(tasks) == 8 and set(tasks[0]["data"]) == {"item_id", "history", "rationale", "packet_id"}
    root = ET.fromstring((packet / "labelstudio_config.xml").read_text())
    ratings = {e.get("name"): e.get("maxRating") for e in root.iter("Rating")}
    assert ratings == {"accuracy": "5", "grounding": "5", "relevance": "5"}
    assert [e.get("name") for e in root.iter("TextArea")] == ["comment"]
    assert {e.get("value") for e in root.iter("Text")} == {"$history", "$rationale"}


def test_export_asks_for_at_most_the_available_rationales(tmp_path):
    rationales, examples = write_rationales(tmp_path, 2)
    with pytest.raises(InputError, match="n=9 but only 4 rationales"):
        export_packet(build(ExportConfig, {"n": 9}), rationales, examples, tmp_path / "p")


def _html_ratings(packet, rater, scores, path):
    pid = read_json(packet / ID_MAP)["packet_id"]
    ratings = [{"item_id": i, "accuracy": a, "grounding": g, "relevance": r, "comment": ""}
               for i, (a, g, r) in scores.items()]
    path.write_text(json.dumps({"packet_id": pid, "rater": rater, "ratings": ratings}))
    return path


def _csv_ratings(packet, rater, scores, path):
    rows = list(csv.DictReader((packet / "packet.csv").open()))
    for row in rows:
        if row["item_id"] in scores:
            values = map(str, scores[row["item_id"]])
            row.update(rater=rater, **dict(zip(("accuracy", "grounding", "relevance"), values)))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)
    return path


def _labelstudio_ratings(rater_id, scores, path):
    tasks = [{"id": k, "data": {"item_id": i}, "annotations": [{
        "completed_by": {"id": rater_id, "email": f"r{rater_id}@example.org"}, "was_cancelled": False,
        "result": [*({"from_name": c, "to_name": "rationale", "type": "rating", "value": {"rating": s}}
                     for c, s in zip(("accuracy", "grounding", "relevance"), v)),
                   {"from_name": "comment", "type": "textarea", "value": {"text": ["fine"]}}]}]}
        for k, (i, v) in enumerate(scores.items())]
    path.write_text(json.dumps(tasks))
    return path


def test_import_three_formats_and_hand_computed_statistics(packet, tmp_path):
    a = {"R001": (1, 5, 3), "R002": (2, 5, 3), "R003": (3, 5, 4)}
    b = {"R001": (1, 4, 3), "R002": (3, 5, 3), "R003": (3, 4, 4)}
    c = {"R001": (2, 4, 3), "R002": (2, 5, 3), "R004": (5, 5, 5)}
    files = [_html_ratings(packet, "ann", a, tmp_path / "ann.json"),
             _csv_ratings(packet, "bob", b, tmp_path / "bob.csv")]
    import_ratings(build(ImportConfig, {}), packet, files, tmp_path / "two")
    two = read_json(tmp_path / "two" / "agreement.json")
    acc = two["criteria"]["accuracy"]
    assert acc["mean"] == pytest.approx((1 + 2 + 3 + 1 + 3 + 3) / 6)
    assert acc["kappa_quadratic"] == pytest.approx(0.8)  # see weighted_kappa's doctest: 1 - (1/3)/(15/9)
    assert acc["n_items_both"] == 3 and acc["primary"] == "kappa_quadratic"
    assert acc["ci_low"] <= acc["mean"] <= acc["ci_high"]
    ratings = pl.read_parquet(tmp_path / "two" / "ratings.parquet")
    assert ratings.height == 6 and set(ratings["backend"]) == {"secret-backend"}  # unblinded on import
    files.append(_labelstudio_ratings(7, c, tmp_path / "ls.json"))
    import_ratings(build(ImportConfig, {"method": "t"}), packet, files, tmp_path / "three")
    three = read_json(tmp_path / "three" / "agreement.json")
    assert three["raters"] == ["ann", "bob", "labelstudio:r7@example.org"]
    assert three["criteria"]["accuracy"]["primary"] == "alpha_ordinal"
    assert three["criteria"]["accuracy"]["kappa_quadratic"] is None
    assert "t interval" in (tmp_path / "three" / "agreement.md").read_text()


def test_krippendorff_ordinal_alpha_matches_the_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units; ordinal 0.815
    nan = np.nan
    data = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
                     [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
                     [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
                     [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]])
    assert ordinal_alpha(data) == pytest.approx(0.815, abs=5e-4)


def test_kappa_by_hand_on_a_larger_table():
    # two raters, 4 items: (1,2), (2,2), (4,5), (5,5); quadratic weights (i-j)^2
    # observed: sum w*O = 1 + 0 + 1 + 0 = 2; marginals A = {1,2,4,5}, B = {2,2,5,5}
    # expected: (1/4) * sum_a sum_b (a-b)^2 = (1/4) * [(1+1+16+16) + (0+0+9+9) + (4+4+1+1) + (9+9+0+0)] = 20
    assert weighted_kappa([1, 2, 4, 5], [2, 2, 5, 5]) == pytest.approx(1 - 2 / 20)


def test_bootstrap_interval_resamples_items(tmp_path):
    df = pl.DataFrame({"item_id": ["a", "a", "b", "c"], "rater": ["x", "y", "x", "x"], "accuracy": [1, 1, 5, 3]})
    cfg = build(ImportConfig, {"n_bootstrap": 500, "seed": 1})
    out = mean_interval(df, "accuracy", cfg)
    assert out["mean"] == pytest.approx(2.5) and out["n_items"] == 3
    assert 1.0 <= out["ci_low"] < 2.5 < out["ci_high"] <= 5.0
    assert mean_interval(df, "accuracy", cfg) == out  # seeded


@pytest.mark.parametrize("case,pattern", [
    ("unknown", r"ann\.json: unknown item id 'R999'"),
    ("range", r"ann\.json: item R001: accuracy score 7 is out of range"),
    ("duplicate", r"ann2\.json: item R001: rater 'ann' rated it also in .*ann\.json"),
    ("packet", r"ann\.json: ratings are for packet 'other'"),
])
def test_invalid_ratings_are_one_line_errors_naming_file_and_item(packet, tmp_path, case, pattern):
    path = _html_ratings(packet, "ann", {"R001": (7 if case == "range" else 3, 3, 3),
                                         **({"R999": (1, 1, 1)} if case == "unknown" else {})}, tmp_path / "ann.json")
    files = [path]
    if case == "duplicate":
        files.append(_html_ratings(packet, "ann", {"R001": (4, 4, 4)}, tmp_path / "ann2.json"))
    if case == "packet":
        path.write_text(path.read_text().replace(read_json(packet / ID_MAP)["packet_id"], "other"))
    with pytest.raises(InputError, match=pattern) as err:
        import_ratings(build(ImportConfig, {}), packet, files, tmp_path / "out")
    assert "\n" not in str(err.value)


def test_cli_export_and_import(tmp_path, capsys):
    rationales, examples = write_rationales(tmp_path)
    assert cli(["annotate", "export", "--rationales", str(rationales), "--examples", str(examples), "--n", "4",
                "--out", str(tmp_path / "p")]) == 0
    a = _html_ratings(tmp_path / "p", "ann", {"R001": (4, 4, 4), "R002": (5, 5, 5)}, tmp_path / "a.json")
    b = _html_ratings(tmp_path / "p", "bob", {"R001": (4, 3, 4), "R002": (5, 5, 4)}, tmp_path / "b.json")
    assert cli(["annotate", "import", "--packet", str(tmp_path / "p"), "--ratings", str(a), str(b), "method=t",
                "--out", str(tmp_path / "r")]) == 0
    assert "accuracy: mean 4.5, n=4, kappa=1.0" in capsys.readouterr().out
    assert read_json(tmp_path / "r" / "agreement.json")["interval"]["method"] == "t interval over item means"
    assert cli(["annotate", "import", "--packet", str(tmp_path / "p"), "--ratings", str(tmp_path / "none.json"),
                "--out", str(tmp_path / "r2")]) == 2
    assert "ratings file not found" in capsys.readouterr().err


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_sample_balances_styles(tmp_path, seed):
    rationales, examples = write_rationales(tmp_path)
    export_packet(build(ExportConfig, {"n": 6, "seed": seed}), rationales, examples, tmp_path / "p")
    styles = [v["style"] for v in read_json(tmp_path / "p" / ID_MAP)["items"].values()]
    assert sorted(styles) == ["freeform"] * 3 + ["stepwise"] * 3


def test_csv_truncated_inside_a_quoted_field_names_file_and_line(packet, tmp_path):
    scores = {f"R00{i}": (3, 3, 3) for i in range(1, 7)}
    path = _csv_ratings(packet, "bob", scores, tmp_path / "bob.csv")
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        row["comment"] = 'good, but "vague"\nsecond line' if row["item_id"] in scores else ""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)
    text = path.read_text()
    cut = text.index("second line", text.index("second line", text.index("second line") + 1) + 1)
    path.write_text(text[:cut])  # ends inside the third rated row's quoted comment
    with pytest.raises(InputError, match=r"bob\.csv: line \d+: the file ends inside a quoted field"):
        import_ratings(build(ImportConfig, {}), packet, [path], tmp_path / "out")


def test_rater_names_differing_only_in_case_are_one_rater(packet, tmp_path):
    files = [_html_ratings(packet, "Ann", {"R001": (3, 3, 3), "R002": (4, 4, 4)}, tmp_path / "a.json"),
             _html_ratings(packet, "ann ", {"R003": (2, 2, 2)}, tmp_path / "b.json"),
             _csv_ratings(packet, "bob", {"R001": (3, 3, 3)}, tmp_path / "bob.csv")]
    import_ratings(build(ImportConfig, {}), packet, files, tmp_path / "out")
    summary = read_json(tmp_path / "out" / "agreement.json")
    assert summary["raters"] == ["Ann", "bob"]
    again = _html_ratings(packet, "ANN", {"R001": (5, 5, 5)}, tmp_path / "c.json")
    with pytest.raises(InputError, match=r"c\.json: item R001: rater 'Ann' rated it also in .*a\.json"):
        import_ratings(build(ImportConfig, {}), packet, [files[0], again], tmp_path / "out2")
