"""The report's figures: matplotlib (Agg, no pyplot state) written as PNGs with fixed metadata.

PNG bytes depend only on the data: the ``Software`` text chunk is dropped, sizes and DPI are fixed, the
SVG hash salt is pinned, and no figure carries a date, so re-running the report reproduces every file.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import polars as pl
from matplotlib.figure import Figure

from rationale_sft.rundir import atomic_path
from rationale_sft.stats import auroc, reliability_curve

RC = {"svg.hashsalt": "rationale-sft", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
      "figure.dpi": 100, "savefig.dpi": 110, "path.simplify": False}
COLORS = ["#1b6ca8", "#d1495b", "#edae49", "#66a182", "#8d5a97", "#00798c", "#6c757d", "#30362f"]


def save(fig: Figure, path: Path) -> str:
    """Write ``fig`` as a PNG without metadata that varies between runs; return the file name."""
    with matplotlib.rc_context(RC), atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None}, bbox_inches="tight")
    return path.name


def color(arms: list[str], arm: str) -> str:
    """A stable colour per arm (its position in the report's arm order)."""
    return COLORS[arms.index(arm) % len(COLORS)] if arm in arms else COLORS[-1]


def reference_lines(ax, oracle: float | None) -> None:
    """Chance (AUROC 0.5) and the oracle's AUROC on the same test subjects, as labelled horizontal lines."""
    ax.axhline(0.5, color="black", lw=0.8, ls=":", label="chance (0.5)")
    if oracle is not None:
        ax.axhline(oracle, color="#8d5a97", lw=1.0, ls="--", label=f"oracle ({oracle:.3f})")


def forest(factors: pl.DataFrame, arms: list[str], path: Path) -> str:
    """Mean Delta AUROC with CI per arm, overall and per factor level (one row each)."""
    order = {a: i for i, a in enumerate(arms)}
    rows = factors.sort(pl.col("arm").replace_strict(order, default=len(order), return_dtype=pl.Int64),
                        maintain_order=True)
    labels = [f"{r['arm']} | {r['factor']}={r['level']}" if r["factor"] != "overall" else f"{r['arm']} | overall"
              for r in rows.iter_rows(named=True)]
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(7, 0.28 * len(labels) + 1.2))
        ax = fig.subplots()
        y = np.arange(len(labels))[::-1]
        for yi, r in zip(y, rows.iter_rows(named=True)):
            c = color(arms, r["arm"])
            ax.plot([r["lo"], r["hi"]], [yi, yi], color=c, lw=1.5)
            overall = r["factor"] == "overall"
            ax.plot(r["mean"], yi, "D" if overall else "o", color=c, ms=6 if overall else 4)
        ax.axvline(0, color="black", lw=0.8, ls="--")
        ax.set_yticks(y, labels)
        ax.set_xlabel("Delta AUROC (arm - reference): mean over paired configurations,\n"
                      "CI by bootstrap over test subjects and configurations")
        return save(fig, path)


def scale_curves(runs: pl.DataFrame, arms: list[str], path: Path,
                 baselines: dict[str, list[tuple[float, float]]] | None = None, oracle: float | None = None) -> str:
    """Mean AUROC (min-max over seeds as bars) against training-set size, per family and arm; baselines'
    AUROC per scale (``{model: [(scale, auroc)]}``) as grey reference lines in every panel, chance and oracle
    as horizontal lines."""
    families = sorted(set(runs["family"].cast(pl.String).fill_null("-").to_list()))
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(3.6 * len(families), 3.2))
        axes = np.atleast_1d(fig.subplots(1, len(families), sharey=True))
        for ax, fam in zip(axes, families):
            sub = runs.filter(pl.col("family").cast(pl.String).fill_null("-") == fam)
            for arm in [a for a in arms if a in set(sub["arm"].to_list())]:
                agg = sub.filter(pl.col("arm") == arm).group_by("scale").agg(
                    pl.col("auroc").mean().alias("m"), pl.col("auroc").min().alias("lo"),
                    pl.col("auroc").max().alias("hi")).sort("scale")
                x = agg["scale"].to_numpy().astype(float)
                ax.errorbar(x, agg["m"], yerr=[agg["m"] - agg["lo"], agg["hi"] - agg["m"]], marker="o", ms=4,
                            capsize=2, label=arm, color=color(arms, arm))
            for k, (model, points) in enumerate(sorted((baselines or {}).items())):
                xs, ys = zip(*sorted(points))
                ax.plot(xs, ys, color="grey", ls=("--", ":", "-.", (0, (1, 3)))[k % 4], lw=1.0, label=model)
            reference_lines(ax, oracle)
            ax.set_xscale("log", base=2)
            ticks = sorted(set(sub["scale"].drop_nulls().cast(pl.Float64).to_list()))
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.set_title(f"family: {fam}")
            ax.set_xlabel("training subjects (scale)")
        axes[0].set_ylabel("AUROC (mean; bars: min-max)")
        axes[-1].legend(frameon=False, fontsize=8)
        return save(fig, path)


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], arms: list[str], title: str, path: Path,
               oracle: tuple[np.ndarray, np.ndarray] | None = None) -> str:
    """ROC curves of several arms on the same subjects, with chance (the diagonal) and the oracle's curve."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(4.2, 4.0))
        ax = fig.subplots()
        for arm, (y, s) in curves.items():
            fpr, tpr = roc_points(y, s)
            ax.plot(fpr, tpr, label=arm, color=color(arms, arm), lw=1.4)
        if oracle is not None:
            fpr, tpr = roc_points(*oracle)
            ax.plot(fpr, tpr, color="#8d5a97", lw=1.0, ls="--", label=f"oracle (AUROC {auroc(*oracle):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="chance (AUROC 0.5)")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(title, fontsize=8)
        ax.legend(frameon=False, fontsize=8, loc="lower right")
        return save(fig, path)


def roc_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1).

    >>> [a.tolist() for a in roc_points(np.array([0, 1, 1]), np.array([0.2, 0.9, 0.2]))]
    [[0.0, 0.0, 1.0], [0.0, 0.5, 1.0]]
    """
    y = np.asarray(y, bool)
    order = np.argsort(-np.asarray(s), kind="stable")
    s_sorted, y_sorted = np.asarray(s)[order], y[order]
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp, fp = np.cumsum(y_sorted)[last], np.cumsum(~y_sorted)[last]
    return np.r_[0.0, fp / (~y).sum()], np.r_[0.0, tp / y.sum()]


def calibration(curves: dict[str, tuple[np.ndarray, np.ndarray]], arms: list[str], n_bins: int, title: str,
                path: Path) -> str:
    """Reliability curves (equal-mass bins) of several arms."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(4.2, 4.0))
        ax = fig.subplots()
        top = 0.05
        for arm, (y, s) in curves.items():
            t = reliability_curve(y, s, n_bins, "quantile")
            ax.plot(t["mean_pred"], t["frac_pos"], marker="o", ms=3, label=arm, color=color(arms, arm))
            top = max(top, float(t["mean_pred"].max()), float(t["frac_pos"].max()))
        ax.plot([0, top], [0, top], color="grey", lw=0.8, ls=":")
        ax.set_xlabel(f"mean predicted risk ({n_bins} equal-mass bins)")
        ax.set_ylabel("observed rate")
        ax.set_title(title, fontsize=8)
        ax.legend(frameon=False, fontsize=8)
        return save(fig, path)


def loss_curves(logs: dict[str, pl.DataFrame], arms: list[str], path: Path) -> str:
    """Label-token and rationale-token loss per arm over optimizer steps."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(8, 3.2))
        ax_l, ax_r = fig.subplots(1, 2)
        for arm, log in logs.items():
            ax_l.plot(log["step"], log["label_loss"], label=arm, color=color(arms, arm), lw=1.2)
            if "rationale_loss" in log.columns and log["rationale_loss"].null_count() < log.height:
                ax_r.plot(log["step"], log["rationale_loss"], label=arm, color=color(arms, arm), lw=1.2)
        ax_l.set_title("label-token loss")
        ax_r.set_title("rationale-token loss")
        for ax in (ax_l, ax_r):
            ax.set_xlabel("optimizer step")
            if ax.lines:
                ax.legend(frameon=False, fontsize=8)
        return save(fig, path)


def bars(table: pl.DataFrame, label_col: str, value_cols: list[str], ylabel: str, path: Path,
         oracle: float | None = None) -> str:
    """Grouped bars: one group per row of ``table``, one bar per value column; AUROC chance and oracle lines."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(max(4.0, 0.9 * table.height + 2), 3.2))
        ax = fig.subplots()
        x = np.arange(table.height)
        width = 0.8 / len(value_cols)
        for i, col in enumerate(value_cols):
            ax.bar(x + i * width - 0.4 + width / 2, table[col].fill_null(np.nan).to_numpy(), width, label=col,
                   color=COLORS[i % len(COLORS)])
        ax.set_xticks(x, table[label_col].to_list(), rotation=20, ha="right")
        ax.set_ylabel(ylabel)
        values = np.concatenate([table[c].cast(pl.Float64).drop_nulls().drop_nans().to_numpy() for c in value_cols])
        ax.set_ylim(max(0.0, min(0.4, float(values.min(initial=0.4)) - 0.05)), 1.0)
        reference_lines(ax, oracle)
        ax.legend(frameon=False, fontsize=8)
        return save(fig, path)


def strata_curves(table: pl.DataFrame, path: Path, oracle: float | None = None) -> str:
    """AUROC per history-length stratum, one panel per scale: label-only, LR and the line count, with the
    pooled within-strata value as the last point (``table`` from :func:`report.history.strata_table`)."""
    scales = list(dict.fromkeys(table["scale"].to_list()))
    series = (("label-only AUROC", COLORS[0], "o"), ("LR AUROC", "grey", "s"), ("line-count AUROC", COLORS[2], "^"))
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(3.4 * len(scales), 3.2))
        axes = np.atleast_1d(fig.subplots(1, len(scales), sharey=True))
        for ax, scale in zip(axes, scales):
            sub = table.filter((pl.col("scale") == scale) & (pl.col("history lines") != "all"))
            names = sub["history lines"].to_list()
            for col, c, marker in series:
                ax.plot(range(len(names)), sub[col].fill_null(np.nan).to_numpy(), marker=marker, ms=4, color=c,
                        label=col.replace(" AUROC", ""))
            reference_lines(ax, oracle)
            ax.set_xticks(range(len(names)), [n.replace("within strata (pooled)", "pooled") for n in names],
                          rotation=30, ha="right")
            ax.set_title(f"scale: {scale}")
            ax.set_xlabel("history lines (stratum)")
        axes[0].set_ylabel("AUROC within stratum")
        axes[-1].legend(frameon=False, fontsize=7)
        return save(fig, path)


def conflict_curves(conflict: pl.DataFrame, arms: list[str], path: Path) -> str:
    """Gradient cosine and norm ratio (log scale) of label vs rationale tokens over steps, mean over seeds per arm."""
    mean = conflict.group_by("arm", "step").agg(pl.col("cos").mean(), pl.col("norm_ratio").mean()).sort("step")
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(8, 3.2))
        ax_c, ax_r = fig.subplots(1, 2)
        for arm in [a for a in arms if a in set(mean["arm"].to_list())]:
            g = mean.filter(pl.col("arm") == arm)
            ax_c.plot(g["step"], g["cos"], marker="o", ms=3, lw=1.2, color=color(arms, arm), label=arm)
            ax_r.plot(g["step"], g["norm_ratio"], marker="o", ms=3, lw=1.2, color=color(arms, arm), label=arm)
        ax_c.axhline(0, color="black", lw=0.8, ls=":")
        ax_r.axhline(1, color="black", lw=0.8, ls=":")
        ax_r.set_yscale("log")
        ax_c.set_title("cosine(g_label, g_rationale)")
        ax_r.set_title("|g_label| / |g_rationale|")
        for ax in (ax_c, ax_r):
            ax.set_xlabel("optimizer step")
        ax_c.legend(frameon=False, fontsize=7)
        return save(fig, path)


def probe_layers(probes: pl.DataFrame, arms: list[str], path: Path, oracle: float | None = None) -> str:
    """Probe AUROC per layer at the last checkpoint, one panel per slot, and the best layer over checkpoints
    (direct slot); mean over seeds per arm; chance and oracle lines in every panel."""
    probe = probes.filter(pl.col("measure") == "probe")
    last = probe.filter(pl.col("step") == pl.col("step").max().over("run_id"))
    slots = [s for s in ("direct", "after") if s in set(last["slot"].to_list())]
    shown = [a for a in arms if a in set(probe["arm"].to_list())]
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(3.4 * (len(slots) + 1), 3.2))
        axes = np.atleast_1d(fig.subplots(1, len(slots) + 1, sharey=True))
        for ax, slot in zip(axes, slots):
            per = last.filter(pl.col("slot") == slot).group_by("arm", "layer").agg(pl.col("auroc").mean()).sort("layer")
            for arm in shown:
                g = per.filter(pl.col("arm") == arm)
                ax.plot(g["layer"], g["auroc"], marker="o", ms=3, lw=1.2, color=color(arms, arm), label=arm)
            ax.set_title(f"{slot} slot, last checkpoint")
            ax.set_xlabel("layer (0 = embeddings)")
        steps = (probe.filter(pl.col("slot") == "direct").group_by("run_id", "arm", "step").agg(pl.col("auroc").max())
                 .group_by("arm", "step").agg(pl.col("auroc").mean()).sort("step"))
        for arm in shown:
            g = steps.filter(pl.col("arm") == arm)
            axes[-1].plot(g["step"], g["auroc"], marker="o", ms=3, lw=1.2, color=color(arms, arm), label=arm)
        axes[-1].set_title("direct slot, best layer")
        axes[-1].set_xlabel("optimizer step (checkpoint)")
        for ax in axes:
            reference_lines(ax, oracle)
        axes[0].set_ylabel("probe AUROC (out of fold)")
        axes[-1].legend(frameon=False, fontsize=7)
        return save(fig, path)


def k_curves(k: pl.DataFrame, greedy: dict[str, float], arms: list[str], path: Path,
             oracle: float | None = None) -> str:
    """AUROC against the number K of sampled rationales averaged per subject, mean over seeds per arm; the greedy
    rationale's AUROC as a cross at the left; chance and oracle lines."""
    mean = k.group_by("arm", "k").agg(pl.col("auroc").mean()).sort("k")
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(5, 3.4))
        ax = fig.subplots()
        for arm in [a for a in arms if a in set(mean["arm"].to_list())]:
            g = mean.filter(pl.col("arm") == arm)
            ax.plot(g["k"], g["auroc"], marker="o", ms=3, lw=1.2, color=color(arms, arm), label=arm)
            if greedy.get(arm) is not None:
                ax.plot([0.5], [greedy[arm]], marker="x", ms=6, color=color(arms, arm))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("K sampled rationales per subject (x at 0.5: greedy)")
        ax.set_ylabel("AUROC")
        reference_lines(ax, oracle)
        ax.legend(frameon=False, fontsize=7)
        return save(fig, path)
