"""Sweep plans: points from grids or --set, named by what differs, shared between grids."""
from pathlib import Path

import pytest
import yaml

from configs.schema import ConfigError
from configs.sweep import SweepConfig, parse_set, sweep_plan
from model.variants import VARIANTS

REPO = Path(__file__).resolve().parents[2]

BASE = {"name": "t", "model": {"memory_slots": 16}, "train": {"matrix_lr": 0.02}}


def names(plan, grid=None):
    return plan.grid_points[grid] if grid else [p.name for p in plan.points]


def test_set_arguments_make_one_grid_of_every_combination():
    plan = sweep_plan(BASE, "t.yaml", ["model.memory_slots=4,16", "train.seed=1337,1"])
    assert names(plan) == ["memory_slots-4", "memory_slots-4_seed-1", "base", "seed-1"]
    by_name = {p.name: p.config for p in plan.points}
    assert by_name["memory_slots-4_seed-1"].model.memory_slots == 4
    assert by_name["memory_slots-4_seed-1"].train.seed == 1
    assert by_name["base"].name == "base" and by_name["base"].train.seed == 1337  # the default
    assert plan.base.name == "t" and plan.sweep.x_setting(plan.sweep.grids[0]) == "model.memory_slots"


def test_grids_share_the_points_that_have_the_same_config():
    data = {**BASE, "sweep": {"grids": [
        {"name": "lr", "zip": {"train.matrix_lr": [0.01, 0.02], "train.embedding_lr": [0.005, 0.01]},
         "set": {"train.seed": [1337, 1]}, "best_of": "train.matrix_lr"},
        {"name": "slots", "set": {"model.memory_slots": [8, 16], "train.seed": [1337, 1]}}]}}
    plan = sweep_plan(data, "t.yaml")
    assert names(plan, "lr") == ["embedding_lr-0.005_matrix_lr-0.01",
                                 "embedding_lr-0.005_matrix_lr-0.01_seed-1", "base", "seed-1"]
    assert names(plan, "slots") == ["memory_slots-8", "memory_slots-8_seed-1", "base", "seed-1"]
    assert len(plan.points) == 6  # base and seed-1 run once for both grids
    sweep = plan.sweep
    assert sweep.swept(sweep.grids[0]) == ["train.matrix_lr"]  # the zipped partner goes along
    assert not plan.points[0].config.sweep.grids  # a point is a plain run


def test_grids_picks_some_of_the_configs_grids_with_the_same_point_names():
    data = {**BASE, "sweep": {"grids": [
        {"name": "lr", "zip": {"train.matrix_lr": [0.01, 0.02], "train.embedding_lr": [0.005, 0.01]}},
        {"name": "slots", "set": {"model.memory_slots": [8, 16]}}]}}
    whole, slots = sweep_plan(data, "t.yaml"), sweep_plan(data, "t.yaml", grids=["slots"])
    assert [g.name for g in slots.sweep.grids] == ["slots"]
    assert names(slots) == names(whole, "slots") == ["memory_slots-8", "base"]
    with pytest.raises(ValueError, match="unknown grid 'lr_chek'; the config's grids: lr, slots"):
        sweep_plan(data, "t.yaml", grids=["lr_chek"])


def test_a_setting_with_one_value_is_fixed_not_swept():
    data = {**BASE, "sweep": {"grids": [{"name": "cap", "set": {
        "train.full_context_cap": [64, 128], "train.variants": [["full"]]}}]}}
    plan = sweep_plan(data, "t.yaml")
    assert names(plan) == ["full_context_cap-64_variants-full", "full_context_cap-128_variants-full"]
    assert plan.sweep.swept(plan.sweep.grids[0]) == ["train.full_context_cap"]
    assert all(p.config.train.variants == ["full"] for p in plan.points)


def test_set_values_are_yaml_split_outside_brackets():
    assert parse_set("train.variants=[window,full],[triplet]") == (
        "train.variants", [["window", "full"], ["triplet"]])
    assert parse_set("train.text_uncut=true,false") == ("train.text_uncut", [True, False])
    assert parse_set("train.matrix_lr=0.01, 0.04") == ("train.matrix_lr", [0.01, 0.04])
    with pytest.raises(ValueError, match="give setting=value1,value2"):
        parse_set("train.seed")


def test_wrong_sweeps_say_what_is_wrong():
    with pytest.raises(ValueError, match="no sweep.grids"):
        sweep_plan(BASE, "t.yaml")
    with pytest.raises(ConfigError, match=r"t.yaml \(point matrx_lr-0.1\): train.matrx_lr: unknown key"):
        sweep_plan(BASE, "t.yaml", ["train.matrx_lr=0.1"])
    with pytest.raises(ConfigError, match=r"model.memory_slots"):
        sweep_plan(BASE, "t.yaml", ["model.memory_slots=-1"])
    with pytest.raises(ConfigError, match=r"^t.yaml: sweep.grids.0: grid 'g' varies nothing"):
        sweep_plan({**BASE, "sweep": {"grids": [{"name": "g"}]}}, "t.yaml")
    with pytest.raises(ValueError, match=r"^--set: grid 'cli': 'seed' is not a setting"):
        sweep_plan(BASE, "t.yaml", ["seed=1,2"])
    with pytest.raises(ValueError, match="equal lengths"):
        SweepConfig.model_validate({"grids": [{"name": "g", "zip": {"a.b": [1, 2], "a.c": [1]}}]})
    with pytest.raises(ValueError, match="best_of must be one of its swept settings"):
        SweepConfig.model_validate({"grids": [{"name": "g", "set": {"train.seed": [1, 2]},
                                               "best_of": "train.seed"}]})



def test_the_study_plans_every_variant_with_two_seeds():
    study = REPO / "configs" / "study.yaml"
    plan = sweep_plan(yaml.safe_load(study.read_text()), str(study))
    check = plan.sweep.grids[0]
    assert check.best_of == "train.matrix_lr" and check.then == {"train.seed": [1]}
    assert {v for p in plan.grid_points["lr_check"] for v in plan.point(p).config.train.variants} \
        == set(VARIANTS)
    for grid in ("memory_slots", "full_context_cap", "text_uncut"):
        seeds = {plan.point(p).config.train.seed for p in plan.grid_points[grid]}
        assert seeds == {1337, 1}, grid
    assert plan.sweep.swept(plan.sweep.grids[2]) == ["train.full_context_cap"]
