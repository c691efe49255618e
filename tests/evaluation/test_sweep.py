"""The sweep report on known figures: means and spreads over seeds, each variant's best learning
rate, W* from a cap sweep, and the sweep warehouse's tables."""
import pytest

from configs.sweep import point_run_dir, sweep_plan
from evaluation.sweep import build_sweep_report, sweep_rows
from evaluation.metrics import Figure, metric_row
from evaluation.stage import write_evaluation
from warehouse.db import connect
from warehouse.sql import run_query

BASE = {"name": "t", "train": {"variants": ["triplet", "full"], "full_context_cap": 32}}
# full's recall_acc by cap (both seeds), its positions; triplet does not read the cap
FULL_ACC = {32: (0.1, 0.1), 64: (0.3, 0.3), 128: (0.7, 0.7), 192: (0.9, 0.9)}
FULL_POSITIONS = {32: 90.0, 64: 120.0, 128: 170.0, 192: 210.0}
TRIPLET = {1337: 0.55, 1: 0.45}  # mean 0.5, spread 0.1


def write_point_metrics(sweep_dir, point, rows):
    point_run_dir(sweep_dir, point).mkdir(parents=True)
    con = connect(point_run_dir(sweep_dir, point))
    write_evaluation(con, "config", {}, [metric_row(v, "none", m, Figure(value), 1)
                                         for v, m, value in rows], [])
    con.close()


@pytest.fixture
def cap_sweep(tmp_path):
    data = {**BASE, "sweep": {"grids": [{"name": "cap", "set": {
        "train.full_context_cap": [32, 64, 128, 192], "train.seed": [1337, 1]}}]}}
    plan = sweep_plan(data, "t.yaml")
    for point in plan.points:
        cap, seed = point.config.train.full_context_cap, point.config.train.seed
        write_point_metrics(tmp_path, point.name, [
            ("full", "recall_acc", FULL_ACC[cap][seed == 1]),
            ("full", "positions", FULL_POSITIONS[cap]),
            ("triplet", "recall_acc", TRIPLET[seed]), ("triplet", "positions", 74.0),
            ("triplet", "recall_spans", 100.0 + (seed == 1) * 20)])
    return plan, tmp_path


def test_figures_are_means_over_seeds_with_their_spread(cap_sweep):
    plan, sweep_dir = cap_sweep
    rows = sweep_rows(plan, sweep_dir)
    triplet = [r for r in rows if r["variant"] == "triplet" and r["metric"] == "recall_acc"]
    assert [r["x"] for r in triplet] == ["32", "64", "128", "192"]
    assert all(r["mean"] == pytest.approx(0.5) and r["spread"] == pytest.approx(0.1)
               and r["n"] == 2 for r in triplet)
    assert triplet[0]["points"] == "base,seed-1"


def test_w_star_is_where_full_reaches_triplet(cap_sweep):
    plan, sweep_dir = cap_sweep
    w = {r["metric"]: r for r in sweep_rows(plan, sweep_dir) if r["variant"] == "triplet"
         and ":" in r["metric"]}
    assert w["w_star_cap:recall_acc"]["mean"] == pytest.approx(96.0)  # halfway from 64 to 128
    assert w["w_star_positions:recall_acc"]["mean"] == pytest.approx(145.0)
    assert w["multiplier:recall_acc"]["mean"] == pytest.approx(145.0 / 74.0)
    assert w["w_star_cap:recall_acc"]["n"] == 2


def test_best_of_marks_each_variants_best_value(tmp_path):
    data = {**BASE, "sweep": {"select_by": "recall_acc", "grids": [{
        "name": "lr", "set": {"train.matrix_lr": [0.01, 0.04]}, "best_of": "train.matrix_lr"}]}}
    plan = sweep_plan(data, "t.yaml")
    acc = {("matrix_lr-0.01", "triplet"): 0.9, ("matrix_lr-0.04", "triplet"): 0.7,
           ("matrix_lr-0.01", "full"): 0.2, ("matrix_lr-0.04", "full"): 0.8}
    for point in plan.points:
        write_point_metrics(tmp_path, point.name, [(v, "recall_acc", acc[(point.name, v)])
                                                   for v in ("triplet", "full")])
    best = {(r["variant"], r["x"]) for r in sweep_rows(plan, tmp_path) if r["best"]}
    assert best == {("triplet", "0.01"), ("full", "0.04")}
    build_sweep_report(plan, tmp_path, {p.name: "ran" for p in plan.points})
    md = (tmp_path / "report" / "sweep.md").read_text()
    assert "Each variant at its best `train.matrix_lr` (by recall_acc)" in md
    assert "| `full` | 0.04 | 0.800 (n=1)" in md


def test_report_writes_its_figures_to_the_sweep_warehouse(cap_sweep):
    plan, sweep_dir = cap_sweep
    result = build_sweep_report(plan, sweep_dir, {p.name: "ran" for p in plan.points}, "cmd")
    assert result["outputs"] == ["report/sweep.md", "report/cap.png", "report/cap-w_star.png"]
    columns, rows = run_query(sweep_dir, "SELECT variant, round(mean, 3), n FROM sweep_metrics "
                              "WHERE metric = 'w_star_cap:recall_acc'")
    assert rows == [("triplet", 96.0, 2)]
    _, points = run_query(sweep_dir, "SELECT count(*) FROM sweep_points WHERE status = 'ran'")
    assert points == [(8,)]
    md = (sweep_dir / "report" / "sweep.md").read_text()
    assert "| `triplet` | recall_acc | 96.0 | 145.0 | 1.96 | 2 |" in md
    # the recall spans each point evaluated, beside the seeds' n
    assert "recall_spans:" in md and "| `triplet` | 110.000 ± 10.000 (n=2) |" in md
    assert "longppl" not in md  # no point scored key tokens: no empty table


def test_longppl_is_tabled_per_point_where_points_scored_key_tokens(cap_sweep):
    plan, sweep_dir = cap_sweep
    for point in plan.points:
        con = connect(point_run_dir(sweep_dir, point.name))
        seed = point.config.train.seed
        write_evaluation(con, "config", {}, [metric_row("triplet", "none", m, Figure(v), 1) for m, v in
                                             (("recall_acc", TRIPLET[seed]), ("positions", 74.0),
                                              ("longppl", 2.0 + (seed == 1)))], [])
        con.close()
    build_sweep_report(plan, sweep_dir, {p.name: "ran" for p in plan.points})
    md = (sweep_dir / "report" / "sweep.md").read_text()
    assert "longppl (exp of the mean loss on the key tokens the point's own `full` chooses" in md
    assert "| `triplet` | 2.500 ± 0.500 (n=2) | 2.500 ± 0.500 (n=2) |" in md


def test_then_reruns_each_variant_at_its_best_value_without_changing_the_choice(tmp_path):
    from configs.sweep import best_points
    from evaluation.sweep import best_of_grid, sweep_metrics
    data = {**BASE, "sweep": {"select_by": "recall_acc", "grids": [{
        "name": "lr", "set": {"train.matrix_lr": [0.01, 0.04]}, "best_of": "train.matrix_lr",
        "then": {"train.seed": [1]}}]}}
    plan = sweep_plan(data, "t.yaml")
    (grid,) = plan.sweep.grids
    check = {("matrix_lr-0.01", "triplet"): 0.9, ("matrix_lr-0.04", "triplet"): 0.7,
             ("matrix_lr-0.01", "full"): 0.2, ("matrix_lr-0.04", "full"): 0.8}
    for point in plan.points:
        write_point_metrics(tmp_path, point.name, [(v, "recall_acc", check[(point.name, v)])
                                                   for v in ("triplet", "full")])
    best = best_of_grid(plan, grid, sweep_metrics(plan, tmp_path))
    assert best == [("triplet", "matrix_lr-0.01"), ("full", "matrix_lr-0.04")]
    then = best_points(plan, grid, best)
    assert [p.name for p in then] == ["matrix_lr-0.01_seed-1_variants-triplet",
                                      "matrix_lr-0.04_seed-1_variants-full"]
    assert then[0].config.train.variants == ["triplet"] and then[0].config.train.seed == 1
    # seed 1 does worse at triplet's best rate: the choice stays, the figure averages both seeds
    write_point_metrics(tmp_path, then[0].name, [("triplet", "recall_acc", 0.3)])
    write_point_metrics(tmp_path, then[1].name, [("full", "recall_acc", 0.6)])
    rows = {(r["variant"], r["x"]): r for r in sweep_rows(plan, tmp_path)}
    assert rows[("triplet", "0.01")]["best"] and rows[("triplet", "0.01")]["n"] == 2
    assert rows[("triplet", "0.01")]["mean"] == pytest.approx(0.6)
    assert not rows[("triplet", "0.04")]["best"] and rows[("triplet", "0.04")]["n"] == 1
    assert rows[("full", "0.04")]["mean"] == pytest.approx(0.7) and rows[("full", "0.04")]["best"]
