"""A sweep: one run config, some of its settings varied, one pipeline run per point.

The `sweep` section of a run config (the pipeline itself reads none of it):

    sweep:
      average_over: [train.seed]     # figures are the mean and spread over these settings
      select_by: recall_bpb          # a `best_of` grid reports each variant at its best value
      grids:
        - name: memory_slots
          set: {model.memory_slots: [4, 8, 16, 32], train.seed: [1337, 1]}   # every combination
        - name: lr_check
          zip: {train.matrix_lr: [0.01, 0.02, 0.04], train.embedding_lr: [0.025, 0.05, 0.1]}
          best_of: train.matrix_lr                                           # zip: side by side
          then: {train.seed: [1]}   # afterwards each variant again at its best value, seed 1
        - name: cap
          set: {train.full_context_cap: [64, 128], train.variants: [[full]]}  # one value: fixed

`python -m flows.sweep --set model.memory_slots=4,8 --set train.seed=1337,1` replaces the grids
by one grid ("cli") of those settings. A point is the config with one combination of a grid's
values; it is named by the settings that differ from the config ("memory_slots-4_seed-1", "base"
when none do), so grids that reach the same config share one point and its run. A grid's x axis
is each setting it varies that is not averaged over (`swept`); the settings zipped with one go
along with it, and the other swept settings make separate series.

`best_of` with `then`: once the grid's points have run, each variant runs again at its best
value of that setting (by `select_by`, chosen on the grid's own points) with each combination of
`then`, in a point of its own (`train.variants: [that variant]`): a learning-rate check on one
seed, and the second seed only at each variant's best rate (`best_points`).

    plan = sweep_plan(yaml.safe_load(open("configs/study.yaml")), "configs/study.yaml")
    plan.points, plan.grid_points["memory_slots"]
"""
from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import ValidationError, field_validator, model_validator

from configs.base import Section, folder_name

if TYPE_CHECKING:
    from configs.schema import RunConfig

CLI_GRID = "cli"


class GridConfig(Section):
    name: str
    set: dict[str, list[Any]] = {}  # every combination of these values
    zip: dict[str, list[Any]] = {}  # these side by side (equal lengths), each pair with every `set` one
    best_of: str | None = None  # a setting of this grid: report each variant at its best value
    then: dict[str, list[Any]] = {}  # with best_of: each variant again at its best, with these

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        return folder_name(name)  # its plots are report/<name>.png

    @model_validator(mode="after")
    def _consistent(self) -> "GridConfig":
        if not self.set and not self.zip:
            raise ValueError(f"grid {self.name!r} varies nothing: give `set` or `zip`")
        both = set(self.set) & set(self.zip)
        if both:
            raise ValueError(f"grid {self.name!r}: {sorted(both)[0]} is in both set and zip")
        for path, values in {**self.set, **self.zip}.items():
            if len(path.split(".")) < 2 or path.split(".")[0] in ("name", "sweep"):
                raise ValueError(f"grid {self.name!r}: {path!r} is not a setting (section.field)")
            if not values:
                raise ValueError(f"grid {self.name!r}: {path} has no values")
        if len({len(v) for v in self.zip.values()}) > 1:
            raise ValueError(f"grid {self.name!r}: the zip lists must have equal lengths")
        if self.best_of is not None and self.best_of not in {**self.set, **self.zip}:
            raise ValueError(f"grid {self.name!r}: best_of {self.best_of} is not one of its settings")
        if self.then and self.best_of is None:
            raise ValueError(f"grid {self.name!r}: `then` runs each variant at its best_of value: "
                             "give best_of")
        return self

    def settings(self) -> list[str]:
        """Every setting this grid varies, zipped ones first."""
        return [*self.zip, *self.set]

    def zip_partners(self) -> list[str]:
        """The zipped settings that go along with the zip's first (or its best_of) setting."""
        lead = self.best_of if self.best_of in self.zip else next(iter(self.zip), None)
        return [s for s in self.zip if s != lead]

    def combinations(self) -> list[dict[str, Any]]:
        """Each point's values: the zipped rows times the product of the `set` lists."""
        rows = [dict(zip(self.zip, values)) for values in zip(*self.zip.values())] or [{}]
        products = [dict(zip(self.set, values)) for values in itertools.product(*self.set.values())]
        return [{**row, **product} for row in rows for product in products]


class SweepConfig(Section):
    average_over: list[str] = ["train.seed"]
    select_by: Literal["recall_bpb", "bpb", "recall_acc"] = "recall_bpb"
    grids: list[GridConfig] = []

    @field_validator("grids")
    @classmethod
    def _unique_names(cls, grids: list[GridConfig]) -> list[GridConfig]:
        names = [g.name for g in grids]
        if len(set(names)) != len(names):
            raise ValueError("grid names must be unique")
        return grids

    @model_validator(mode="after")
    def _best_of_is_the_x_axis(self) -> "SweepConfig":
        for grid in self.grids:
            if grid.best_of is not None and grid.best_of not in self.swept(grid):
                raise ValueError(f"grid {grid.name!r}: best_of must be one of its swept settings "
                                 f"({', '.join(self.swept(grid))}), not averaged over nor zipped "
                                 "with another")
        return self

    def swept(self, grid: GridConfig) -> list[str]:
        """The settings a grid's figures are plotted against: those with more than one value
        that are not averaged over, a zip counting once (by its first setting; the others go
        along). A setting with one value is fixed for the grid's points."""
        values = {**grid.zip, **grid.set}
        return [s for s in grid.settings() if s not in self.average_over
                and s not in grid.zip_partners() and len(values[s]) > 1]

    def x_setting(self, grid: GridConfig) -> str | None:
        """The first swept setting (None: the grid varies only averaged ones)."""
        return next(iter(self.swept(grid)), None)


def higher_is_better(metric: str) -> bool:
    return metric.startswith("recall_acc")


# ---------------------------------------------------------------- settings in a config mapping

def setting_value(data: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of a config mapping (None when absent)."""
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def with_settings(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config mapping with the dotted-path `values` set (sections made as needed)."""
    data = copy.deepcopy(data)
    for path, value in values.items():
        *sections, name = path.split(".")
        node = data
        for part in sections:
            node = node.setdefault(part, {})
        node[name] = value
    return data


def parse_set(text: str) -> tuple[str, list[Any]]:
    """`--set model.memory_slots=4,8,16` -> ("model.memory_slots", [4, 8, 16]); values are YAML
    (numbers, booleans, [lists]), split at the commas outside brackets."""
    path, sep, values = text.partition("=")
    if not sep or not path.strip() or not values.strip():
        raise ValueError(f"--set {text!r}: give setting=value1,value2,...")
    items, depth, current = [], 0, ""
    for char in values:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return path.strip(), [yaml.safe_load(item.strip()) for item in items]


# ---------------------------------------------------------------- points

def _label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ".".join(_label(v) for v in value)
    return re.sub(r"[^A-Za-z0-9.-]", "", str(value)) or "x"


def point_name(differing: dict[str, Any], all_paths: set[str]) -> str:
    """A folder name from the settings that differ from the config, by their last part ("seed-1")
    unless two settings of the sweep share it (then the whole path)."""
    if not differing:
        return "base"
    tails = [p.split(".")[-1] for p in all_paths]
    parts = []
    for path in sorted(differing):
        tail = path.split(".")[-1]
        label = tail if tails.count(tail) == 1 else path.replace(".", "-")
        parts.append(f"{label}-{_label(differing[path])}")
    return "_".join(parts)


@dataclass(frozen=True)
class Point:
    name: str
    config: "RunConfig" = field(compare=False)  # the base config with the point's settings


def resolved_value(cfg: "RunConfig", path: str) -> Any:
    """A setting's value in a validated config, as YAML would write it."""
    return setting_value(cfg.model_dump(mode="json"), path)


@dataclass(frozen=True)
class SweepPlan:
    sweep: SweepConfig
    base: "RunConfig"  # the config the points vary
    points: list[Point]  # in the order they run
    grid_points: dict[str, list[str]]  # grid name -> its points, in grid order
    source: str = "<config>"
    # grid name -> its `then` points, added by `best_points` once the grid's points have run
    then_points: dict[str, list[str]] = field(default_factory=dict)

    def point(self, name: str) -> Point:
        return next(p for p in self.points if p.name == name)

    def add_point(self, values: dict[str, Any]) -> Point:
        """The point of the base config with these settings (a new one, or the one it already is)."""
        resolved = self.base.model_dump(mode="json")
        differing = {p: v for p, v in values.items() if setting_value(resolved, p) != v}
        all_paths = {p for g in self.sweep.grids for p in [*g.settings(), *g.then]} | set(values)
        name = point_name(differing, all_paths)
        if not any(p.name == name for p in self.points):
            from configs.schema import parse_config
            data = with_settings(self.base.model_dump(mode="json", exclude={"sweep"}),
                                 {**differing, "name": name})
            self.points.append(Point(name, parse_config(data, f"{self.source} (point {name})")))
        return self.point(name)


def sweep_plan(data: dict[str, Any], source: str, sets: list[str] | None = None,
               grids: list[str] | None = None) -> SweepPlan:
    """The points of a config mapping's sweep (`sets`: `--set` arguments, which replace the grids;
    `grids`: run only these of the config's grids, in the config's order).

    Raises configs.schema's ConfigError, one line naming the field (a point's: the point too),
    and ValueError for a `--set` or grid name that is wrong or a config without grids."""
    from configs.schema import parse_config
    config = parse_config(data, source)  # the sweep section is validated with the rest
    sweep = config.sweep
    if sets:
        try:
            grid = GridConfig(name=CLI_GRID, set=dict(map(parse_set, sets)))
        except ValidationError as err:
            raise ValueError(f"--set: {err.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        sweep = sweep.model_copy(update={"grids": [grid]})
    if grids:
        known = [g.name for g in sweep.grids]
        unknown = [g for g in grids if g not in known]
        if unknown:
            raise ValueError(f"unknown grid {unknown[0]!r}; the config's grids: {', '.join(known)}")
        sweep = sweep.model_copy(update={"grids": [g for g in sweep.grids if g.name in grids]})
    if not sweep.grids:
        raise ValueError("the config has no sweep.grids: give --set setting=v1,v2,... or add a "
                         "sweep section (configs/sweep.py)")
    plan = SweepPlan(sweep, config.model_copy(update={"sweep": SweepConfig()}), [], {}, source)
    for grid in sweep.grids:
        names = [plan.add_point(values).name for values in grid.combinations()]
        plan.grid_points[grid.name] = list(dict.fromkeys(names))
    return plan


def best_points(plan: SweepPlan, grid: GridConfig, best: list[tuple[str, str]]) -> list[Point]:
    """A `then` grid's second round: for each (variant, its best point of the grid), that point's
    grid values with each combination of `then`, training that variant only. Added to the plan
    (`then_points`) and returned in the order they run."""
    averaged = set(plan.sweep.average_over) | set(grid.then)
    names = []
    for variant, point in best:
        cfg = plan.point(point).config
        kept = {s: resolved_value(cfg, s) for s in grid.settings() if s not in averaged}
        for values in GridConfig(name=grid.name, set=grid.then).combinations():
            names.append(plan.add_point({**kept, **values, "train.variants": [variant]}).name)
    plan.then_points[grid.name] = list(dict.fromkeys(names))
    return [plan.point(n) for n in plan.then_points[grid.name]]


# ---------------------------------------------------------------- the sweep folder

POINTS, UPSTREAM, CONFIGS = "points", "upstream", "configs"  # folders of a sweep folder


def default_sweep_name(cfg: "RunConfig") -> str:
    return f"{cfg.name}-sweep"


def point_run_dir(sweep_dir: Path, point: str) -> Path:
    """A point's run folder (the pipeline's runs dir is `sweep_dir/points`)."""
    return Path(sweep_dir) / POINTS / point
