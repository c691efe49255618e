"""The sweep report: each metric against each grid's swept setting, per variant, with the spread
over seeds; each variant at its best learning rate; and W*, the effective context of `full`.

    build_sweep_report(plan, sweep_dir, statuses)   # report/sweep.md, report/<grid>.png, tables

Every figure is a row of the sweep folder's `sweep_metrics` table, and every point a row of
`sweep_points` (warehouse/contracts.py has the columns); this module is their only writer:

    python -m warehouse.sql --run runs/study-sweep "SELECT grid, x, variant, metric, mean, spread, n
        FROM sweep_metrics WHERE metric = 'recall_acc' AND ablation = 'none'"

A figure is the mean over the grid's points that differ only in the `average_over` settings (the
seeds), with their spread (max - min) and n, how many there are; `recall_spans` (each point's
recall spans evaluated, mean over the seeds) says how many spans each recall figure rests on. A point's values are those of
its run's `metrics` table (evaluation/metrics.py). In a grid with `best_of`, each variant's best
value of that setting (by `select_by`, mean over seeds) is marked `best`: the study reports every
variant at its own best learning rate, so none is a strawman. A grid that sweeps
`train.full_context_cap` also gives W* (evaluation/effective_context.py) for every other variant
and for recall_acc and recall_bpb: the cap at which `full` matches it, `full`'s positions there,
and the multiplier over the positions the variant uses.
"""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from configs.sweep import GridConfig, SweepPlan, higher_is_better, point_run_dir, resolved_value
from evaluation.effective_context import CurvePoint, effective_context
from evaluation.metrics import EvaluationsOutdated, Metrics, read_metrics
from evaluation.report import _fmt, _save_figure, _table, variant_color, variant_marker
from model.variants import PROPOSED, UPPER_BOUND, VARIANTS
from warehouse.contracts import SWEEP_METRICS_SCHEMA, SWEEP_POINTS_SCHEMA
from warehouse.db import DB_NAME, connect
from warehouse.shard_io import write_text_atomically

REPORT_DIR = "report"
# recall_spans: each point's sample size (the seeds' n is the figure's own `n`)
METRICS = ("recall_acc", "recall_bpb", "bpb", "longppl", "positions", "compression",
           "recall_spans")
PLOTTED = ("recall_acc", "recall_bpb", "bpb")
# longppl: in the per-point tables only, since each point's own `full` chooses its key tokens
TABLED = (*PLOTTED, "longppl", "positions", "recall_spans")
MATCHED = ("recall_acc", "recall_bpb")  # W* is read on these


def reads_the_cap(setting: str) -> bool:
    """Whether a swept setting is the upper bound's own (`full`'s context cap): W* reads it."""
    return setting in VARIANTS[UPPER_BOUND].settings


def point_metrics(sweep_dir: Path, point: str) -> Metrics | None:
    """The current evaluation of a point's run, or None when it has none yet."""
    run = point_run_dir(sweep_dir, point)
    if not (run / DB_NAME).is_file():
        return None
    con = connect(run, read_only=True)
    try:
        return read_metrics(con)
    except EvaluationsOutdated:  # an older pipeline's run: this one has not evaluated it yet
        return None
    finally:
        con.close()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _tail(path: str) -> str:
    return path.split(".")[-1]


def figure(grid: str, setting: str, x: str, x_value: float | None, series: str, variant: str,
           ablation: str, metric: str, values: list[tuple[str, float]], note: str = "") -> dict[str, Any]:
    """A sweep_metrics row: the mean, spread and n of (point, value) pairs."""
    numbers = [v for _, v in values]
    return {"grid": grid, "setting": setting, "x": x, "x_value": x_value, "series": series,
            "variant": variant, "ablation": ablation, "metric": metric,
            "mean": sum(numbers) / len(numbers) if numbers else None,
            "spread": max(numbers) - min(numbers) if numbers else None, "n": len(numbers),
            "best": False, "note": note, "points": ",".join(p for p, _ in values)}


def setting_figures(plan: SweepPlan, grid: GridConfig, x_setting: str, metrics: dict[str, Metrics],
                    names: list[str]) -> list[dict[str, Any]]:
    """The figures of the points `names` of a grid against one of its swept settings (the other
    swept settings make the series), ordered by series, variant (the table's order), metric,
    then x as the grid has it."""
    sweep = plan.sweep
    with_x = grid.zip_partners() if x_setting in grid.zip else []
    series_settings = [s for s in sweep.swept(grid) if s != x_setting]
    configs = {p.name: p.config for p in plan.points}
    cells: dict[tuple, list[tuple[str, float]]] = defaultdict(list)
    for name in names:
        cfg, values = configs[name], metrics.get(name)
        if values is None:
            continue
        x = resolved_value(cfg, x_setting) if x_setting else ""
        label = " ".join([str(x), *(f"({_tail(s)} {resolved_value(cfg, s)})" for s in with_x)])
        series = ", ".join(f"{_tail(s)}={resolved_value(cfg, s)}" for s in series_settings)
        for (variant, ablation, metric), value in values.values.items():
            if metric in METRICS and variant in cfg.train.variants:
                cells[(label.strip(), _number(x), series, variant, ablation, metric)].append((name, value))
    series_order = list(dict.fromkeys(key[2] for key in cells))
    variant_order = list(VARIANTS)
    rows = [figure(grid.name, x_setting, *key, values) for key, values in cells.items()]
    rows.sort(key=lambda r: (series_order.index(r["series"]), variant_order.index(r["variant"]),
                             r["ablation"] != "none", r["ablation"], METRICS.index(r["metric"])))
    return rows


def best_figures(rows: list[dict[str, Any]], select_by: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(series, variant) -> its figure of `select_by` (ablation none) at its best x."""
    sign = 1 if higher_is_better(select_by) else -1
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r["ablation"] == "none" and r["metric"] == select_by and r["mean"] is not None:
            key = (r["series"], r["variant"])
            if key not in best or sign * r["mean"] > sign * best[key]["mean"]:
                best[key] = r
    return best


def best_of_grid(plan: SweepPlan, grid: GridConfig, metrics: dict[str, Metrics]) -> list[tuple[str, str]]:
    """(variant, a point of the grid at the variant's best value of `best_of`), chosen on the
    grid's own points (a `then` round does not change the choice); one per series."""
    rows = setting_figures(plan, grid, grid.best_of, metrics, plan.grid_points[grid.name])
    return [(variant, figure["points"].split(",")[0])
            for (_, variant), figure in best_figures(rows, plan.sweep.select_by).items()]


def grid_figures(plan: SweepPlan, grid: GridConfig, metrics: dict[str, Metrics]) -> list[dict[str, Any]]:
    """A grid's figures against each of its swept settings (just the points, when it only
    varies seeds), each followed by its W* rows where the setting is `full`'s cap. Against its
    `best_of` setting its `then` points count too, and each variant's best x is marked."""
    rows = []
    own = plan.grid_points[grid.name]
    for x_setting in plan.sweep.swept(grid) or [""]:
        if x_setting == grid.best_of:
            chosen = best_figures(setting_figures(plan, grid, x_setting, metrics, own),
                                  plan.sweep.select_by)
            figures = setting_figures(plan, grid, x_setting, metrics,
                                      own + plan.then_points.get(grid.name, []))
            for r in figures:
                r["best"] = (r["series"], r["variant"]) in chosen and \
                    chosen[(r["series"], r["variant"])]["x"] == r["x"]
        else:
            figures = setting_figures(plan, grid, x_setting, metrics, own)
        rows += figures + (effective_context_figures(figures) if reads_the_cap(x_setting) else [])
    return rows


def effective_context_figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """W* rows of a grid's figures against `full`'s cap (module docstring): per series, for every
    variant other than `full` and each of MATCHED. The other variants do not read the cap, so
    their level is their figure at the grid's first cap."""
    at: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["ablation"] == "none" and r["mean"] is not None:
            at[(r["series"], r["variant"], r["metric"])].append(r)
    out = []
    for (series, variant, metric), levels in at.items():
        full = at.get((series, UPPER_BOUND, metric), [])
        full_positions = {r["x"]: r["mean"] for r in at.get((series, UPPER_BOUND, "positions"), [])}
        if variant == UPPER_BOUND or metric not in MATCHED or not full:
            continue
        level = levels[0]
        curve = [CurvePoint(r["x_value"], r["mean"], full_positions[r["x"]]) for r in full
                 if r["x"] in full_positions and r["x_value"] is not None]
        match = effective_context(curve, level["mean"], higher_is_better(metric))
        used = next((r["mean"] for r in at.get((series, variant, "positions"), [])), None)
        for name, value in ((f"w_star_cap:{metric}", match.cap),
                            (f"w_star_positions:{metric}", match.positions),
                            (f"multiplier:{metric}", match.multiplier(used))):
            out.append({"grid": level["grid"], "setting": level["setting"], "x": "", "x_value": None,
                        "series": series, "variant": variant, "ablation": "none", "metric": name,
                        "mean": value, "spread": None, "n": min(r["n"] for r in [level, *full]),
                        "best": False, "note": match.note, "points": level["points"]})
    return out


def sweep_metrics(plan: SweepPlan, sweep_dir: Path) -> dict[str, Metrics]:
    """point -> its metrics, for the points that have evaluated."""
    return {p.name: m for p in plan.points if (m := point_metrics(sweep_dir, p.name)) is not None}


def sweep_rows(plan: SweepPlan, sweep_dir: Path) -> list[dict[str, Any]]:
    """Every figure of the sweep: each grid's, then its W* rows where it sweeps the cap."""
    metrics = sweep_metrics(plan, sweep_dir)
    return [row for grid in plan.sweep.grids for row in grid_figures(plan, grid, metrics)]


def point_rows(plan: SweepPlan, statuses: dict[str, str]) -> list[dict[str, Any]]:
    """One row per point: its grids (a `then` round's as "<grid> (then)"), their settings' values
    at the point, and how its run went."""
    rows = []
    for p in plan.points:
        own = [g for g in plan.sweep.grids if p.name in plan.grid_points[g.name]]
        then = [g for g in plan.sweep.grids if p.name in plan.then_points.get(g.name, [])]
        settings = [s for g in own for s in g.settings()] + \
            [s for g in then for s in [*g.settings(), *g.then, "train.variants"]]
        rows.append({"point": p.name,
                     "grids": ",".join([g.name for g in own] + [f"{g.name} (then)" for g in then]),
                     "settings": json.dumps({s: resolved_value(p.config, s)
                                             for s in dict.fromkeys(settings)}),
                     "status": statuses.get(p.name, "not run")})
    return rows


def write_tables(sweep_dir: Path, points: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Replace the sweep warehouse's two tables (their schemas: warehouse/contracts.py)."""
    con = duckdb.connect(str(Path(sweep_dir) / DB_NAME))
    try:
        for name, schema, data in (("sweep_points", SWEEP_POINTS_SCHEMA, points),
                                   ("sweep_metrics", SWEEP_METRICS_SCHEMA, rows)):
            con.register("incoming", pa.Table.from_pylist(data, schema=schema))
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM incoming")
            con.unregister("incoming")
    finally:
        con.close()


# ---------------------------------------------------------------- plots

def _cell(row: dict[str, Any] | None) -> str:
    if row is None or row["mean"] is None:
        return "–"
    spread = f" ± {row['spread'] / 2:.3f}" if row["n"] > 1 else ""
    return f"{row['mean']:.3f}{spread} (n={row['n']})"


def _curves(rows: list[dict[str, Any]], metric: str) -> dict[str, list[dict[str, Any]]]:
    curves: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["metric"] == metric and r["ablation"] == "none":
            curves[r["variant"] + (f" ({r['series']})" if r["series"] else "")].append(r)
    return curves


def _line_style(rows: list[dict[str, Any]], points: list[dict[str, Any]]) -> str:
    """One line style per series, so a variant's curves for two values of another setting differ."""
    series = list(dict.fromkeys(r["series"] for r in rows))
    return ("-", "--", ":", "-.")[series.index(points[0]["series"]) % 4]


def plot_grid(grid: str, setting: str, rows: list[dict[str, Any]], path: Path) -> Path:
    """One panel per plotted metric: mean against the swept setting, bars spanning the seeds."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5 * len(PLOTTED), 4), layout="constrained")
    numeric = all(r["x_value"] is not None for r in rows)
    for i, metric in enumerate(PLOTTED):
        ax = fig.add_subplot(1, len(PLOTTED), i + 1)
        for label, points in _curves(rows, metric).items():
            xs = [r["x_value"] if numeric else r["x"] for r in points]
            n = max(r["n"] for r in points)
            ax.errorbar(xs, [r["mean"] for r in points], yerr=[r["spread"] / 2 for r in points],
                        marker=variant_marker(label.split(" ")[0]), capsize=3, linewidth=1.2,
                        label=f"{label} (n={n})", color=variant_color(label.split(" ")[0]),
                        linestyle=_line_style(rows, points))
        if numeric and min(r["x_value"] for r in rows) > 0 and \
                max(r["x_value"] for r in rows) >= 4 * min(r["x_value"] for r in rows):
            ax.set_xscale("log", base=2)
        ax.set_xlabel(setting or "point")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.set_title(f"{metric} ({grid})")
    fig.axes[0].legend(fontsize=7)
    return _save_figure(fig, path)


def plot_effective_context(rows: list[dict[str, Any]], w_star: list[dict[str, Any]], path: Path) -> Path:
    """`full` against its cap, each other variant's level as a line, W* marked where it falls."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5 * len(MATCHED), 4), layout="constrained")
    for i, metric in enumerate(MATCHED):
        ax = fig.add_subplot(1, len(MATCHED), i + 1)
        for label, points in _curves(rows, metric).items():
            variant = label.split(" ")[0]
            if variant == UPPER_BOUND:
                ax.errorbar([r["x_value"] for r in points], [r["mean"] for r in points],
                            yerr=[r["spread"] / 2 for r in points], marker=variant_marker(variant),
                            capsize=3, color=variant_color(variant),
                            label=f"{label} (n={points[0]['n']})")
                continue
            ax.axhline(points[0]["mean"], linestyle="--", linewidth=1, color=variant_color(variant),
                       label=f"{label} (n={points[0]['n']})")
            cap = next((r["mean"] for r in w_star if r["metric"] == f"w_star_cap:{metric}"
                        and r["variant"] == variant and r["series"] == points[0]["series"]), None)
            if cap is not None:
                ax.plot([cap], [points[0]["mean"]], marker="x", markersize=9,
                        color=variant_color(variant))
        ax.set_xlabel(f"{UPPER_BOUND}: {rows[0]['setting']} (tokens)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.set_title(f"W*: where full reaches each level ({metric})")
    fig.axes[0].legend(fontsize=7)
    return _save_figure(fig, path)


# ---------------------------------------------------------------- markdown

def grid_section(plan: SweepPlan, grid: GridConfig, setting: str, rows: list[dict[str, Any]],
                 png: Path | None) -> list[str]:
    """A grid's figures against one setting: the plot, then one table per plotted metric."""
    over = ", ".join(plan.sweep.average_over)
    lines = [f"## Grid `{grid.name}`" + (f": against `{setting}`" if setting else ""), "",
             f"Mean ± half the spread (max - min) over `{over}`, n = how many; ablation `none`; "
             f"{plan.base.evaluate.max_windows or 'all'} val windows per evaluation.", ""]
    if not rows:
        return lines + ["No point of this grid has been evaluated yet.", ""]
    if png is not None:
        lines += [f"![{grid.name}]({png.name})", ""]
    xs = list(dict.fromkeys(r["x"] for r in rows))
    by_key = {(r["series"], r["variant"], r["metric"], r["x"]): r for r in rows
              if r["ablation"] == "none"}
    curves = list(dict.fromkeys((series, variant) for series, variant, _, _ in by_key))
    header = [f"{_tail(setting)} = {x}" if setting else "all points" for x in xs]
    for metric in TABLED:
        if not any(key[2] == metric for key in by_key):
            continue  # longppl where no point trained `full`
        table = [[f"`{variant}`" + (f" ({series})" if series else ""),
                  *(_cell(by_key.get((series, variant, metric, x))) for x in xs)]
                 for series, variant in curves]
        note = (" (exp of the mean loss on the key tokens the point's own `full` chooses, "
                "model/key_tokens.py: compare within a column)" if metric == "longppl" else "")
        lines += [f"{metric}{note}:", "", *_table(["variant", *header], table), ""]
    if grid.best_of == setting:
        lines += best_section(plan, grid, rows)
    return lines


def _beats(proposed: dict[str, Any] | None, other: dict[str, Any] | None, metric: str) -> str:
    """Whether PROPOSED's figure is better than `other`'s by more than either's seed spread."""
    if proposed is None or other is None or proposed["mean"] is None or other["mean"] is None:
        return "–"
    gap = (proposed["mean"] - other["mean"]) * (1 if higher_is_better(metric) else -1)
    margin = max(proposed["spread"] or 0.0, other["spread"] or 0.0)
    verdict = "yes" if gap > margin else ("no: behind" if gap < -margin else "no: within spread")
    return f"{gap:+.3f} ({verdict})"


def best_section(plan: SweepPlan, grid: GridConfig, rows: list[dict[str, Any]]) -> list[str]:
    best = {(r["series"], r["variant"], r["metric"]): r for r in rows
            if r["best"] and r["ablation"] == "none"}
    variants = list(dict.fromkeys((s, v) for s, v, _ in best))
    table = []
    for series, variant in variants:
        get = lambda m: best.get((series, variant, m))  # noqa: E731
        chosen = get(plan.sweep.select_by)
        table.append([f"`{variant}`" + (f" ({series})" if series else ""),
                      chosen["x"] if chosen else "–", *(_cell(get(m)) for m in PLOTTED),
                      _fmt(get("positions") and get("positions")["mean"], 1),
                      _fmt(get("compression") and get("compression")["mean"], 1),
                      *(_beats(best.get((series, PROPOSED, m)), get(m), m) if variant != PROPOSED
                        else "" for m in MATCHED)])
    then = (f" It was chosen on the grid's own points; each variant then ran again at its best "
            f"value with {', '.join(f'`{k}` = {v}' for k, v in grid.then.items())}, and its "
            "figures here are the mean over both." if grid.then else "")
    return [f"### Each variant at its best `{grid.best_of}` (by {plan.sweep.select_by})", "",
            f"Each variant's figures at its own best value of `{grid.best_of}`.{then} "
            f"`{PROPOSED} ahead` is {PROPOSED}'s lead (recall_acc: higher, recall_bpb: lower is "
            "better) and whether it exceeds the larger seed spread of the two.", "",
            *_table(["variant", f"best {_tail(grid.best_of)}", *PLOTTED, "positions",
                     "compression", *(f"{PROPOSED} ahead, {m}" for m in MATCHED)], table), ""]


def effective_context_section(w_star: list[dict[str, Any]], png: Path | None) -> list[str]:
    lines = ["### Effective context W*", "",
             "The cap at which `full` (all earlier tokens up to the cap) matches each variant, read "
             "between the two caps that bracket it; `positions` is `full`'s attention positions "
             "there and the multiplier those over the positions the variant uses.", ""]
    if png is not None:
        lines += [f"![effective context]({png.name})", ""]
    by = {(r["series"], r["variant"], r["metric"]): r for r in w_star}
    table = []
    for series, variant in dict.fromkeys((s, v) for s, v, _ in by):
        for metric in MATCHED:
            cap = by.get((series, variant, f"w_star_cap:{metric}"))
            if cap is None:
                continue
            positions = by[(series, variant, f"w_star_positions:{metric}")]
            multiplier = by[(series, variant, f"multiplier:{metric}")]
            table.append([f"`{variant}`" + (f" ({series})" if series else ""), metric,
                          _fmt(cap["mean"], 1) if cap["mean"] is not None else cap["note"],
                          _fmt(positions["mean"], 1), _fmt(multiplier["mean"], 2), str(cap["n"])])
    return lines + _table(["variant", "metric", "W* (cap)", "full's positions at W*",
                           "multiplier", "n"], table) + [""]


def build_sweep_report(plan: SweepPlan, sweep_dir: Path, statuses: dict[str, str],
                       command: str = "") -> dict[str, Any]:
    """Write the sweep's tables, plots and report/sweep.md; returns the outputs and row counts."""
    sweep_dir = Path(sweep_dir)
    out_dir = sweep_dir / REPORT_DIR
    rows = sweep_rows(plan, sweep_dir)
    points = point_rows(plan, statuses)
    write_tables(sweep_dir, points, rows)
    lines = [f"# Sweep `{sweep_dir.name}`", "",
             f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC" +
             (f" by `{command}`" if command else "") + f". {len(plan.points)} points; every "
             "figure is a row of the sweep's `sweep_metrics` table:", "",
             f"    python -m warehouse.sql --run {sweep_dir} \"SELECT grid, x, series, variant, "
             "metric, mean, spread, n FROM sweep_metrics WHERE ablation = 'none'\"", "",
             "## Points", "",
             *_table(["point", "grids", "settings", "status"],
                     [[f"`{p['point']}`", p["grids"], p["settings"], p["status"]] for p in points]),
             ""]
    pngs = []
    for grid in plan.sweep.grids:
        swept = plan.sweep.swept(grid) or [""]
        for setting in swept:
            figures = [r for r in rows if r["grid"] == grid.name and r["setting"] == setting]
            curve_rows = [r for r in figures if ":" not in r["metric"]]
            stem = grid.name if len(swept) == 1 else f"{grid.name}-{_tail(setting)}"
            png = plot_grid(grid.name, setting, curve_rows, out_dir / f"{stem}.png") \
                if curve_rows else None
            lines += grid_section(plan, grid, setting, curve_rows, png)
            pngs += [png] if png else []
            w_star = [r for r in figures if ":" in r["metric"]]
            if w_star:
                pngs.append(plot_effective_context(curve_rows, w_star, out_dir / f"{stem}-w_star.png"))
                lines += effective_context_section(w_star, pngs[-1])
    report = write_text_atomically("\n".join(lines), out_dir / "sweep.md")
    return {"outputs": [p.relative_to(sweep_dir).as_posix() for p in (report, *pngs)],
            "rows": {"sweep_metrics": len(rows), "sweep_points": len(points)}}
