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
          set: {train.seed: [1337, 1]}                                       # zip: side by side
          best_of: train.matrix_lr

`python -m flows.sweep --set model.memory_slots=4,8 --set train.seed=1337,1` replaces the grids
by one grid ("cli") of those settings. A point is the config with one combination of a grid's
values; it is named by the settings that differ from the config ("memory_slots-4_seed-1", "base"
when none do), so grids that reach the same config share one point and its run. A grid's x axis
is each setting it varies that is not averaged over (`swept`); the settings zipped with one go
along with it, and the other swept settings make separate series.

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
from pydantic import Field, field_validator, model_validator

from configs.base import Section, folder_name

if TYPE_CHECKING:
    from configs.schema import RunConfig

CLI_GRID = "cli"


class GridConfig(Section):
    name: str
    set: dict[str, list[Any]] = {}  # every combination of these values
    zip: dict[str, list[Any]] = {}  # these side by side (equal lengths), each pair with every `set` one
    best_of: str | None = None  # a setting of this grid: report each variant at its best value

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
        return self

    def settings(self) -> list[str]:
        """Every setting this grid varies, zipped ones first."""
        return [*self.zip, *self.set]

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
        """The settings a grid's figures are plotted against: those not averaged over, a zip
        counting once (by its first setting; the others go along)."""
        zipped = list(grid.zip)[1:]
        return [s for s in grid.settings() if s not in self.average_over and s not in zipped]

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


def sweep_plan(data: dict[str, Any], source: str, sets: list[str] | None = None) -> SweepPlan:
    """The points of a config mapping's sweep (`sets`: `--set` arguments, which replace the grids).

    Raises ValueError for a sweep section or `--set` that is wrong, and configs.schema's
    ConfigError naming the point and the field for a point whose config is invalid."""
    from configs.schema import parse_config
    sweep = SweepConfig.model_validate(data.get("sweep") or {})
    if sets:
        sweep = sweep.model_copy(update={"grids": [GridConfig(name=CLI_GRID,
                                                              set=dict(map(parse_set, sets)))]})
    if not sweep.grids:
        raise ValueError("the config has no sweep.grids: give --set setting=v1,v2,... or add a "
                         "sweep section (configs/sweep.py)")
    base = {k: v for k, v in data.items() if k != "sweep"}
    base_config = parse_config(base, source)
    resolved = base_config.model_dump(mode="json")
    all_paths = {p for g in sweep.grids for p in g.settings()}
    points: dict[str, Point] = {}
    grid_points: dict[str, list[str]] = {}
    for grid in sweep.grids:
        names = []
        for values in grid.combinations():
            differing = {p: v for p, v in values.items() if setting_value(resolved, p) != v}
            name = point_name(differing, all_paths)
            if name not in points:
                point_data = with_settings(base, {**differing, "name": name})
                points[name] = Point(name, parse_config(point_data, f"{source} (point {name})"))
            names.append(name)
        grid_points[grid.name] = list(dict.fromkeys(names))
    return SweepPlan(sweep, base_config, list(points.values()), grid_points)


# ---------------------------------------------------------------- the sweep folder

POINTS, UPSTREAM, CONFIGS = "points", "upstream", "configs"  # folders of a sweep folder


def default_sweep_name(cfg: "RunConfig") -> str:
    return f"{cfg.name}-sweep"


def point_run_dir(sweep_dir: Path, point: str) -> Path:
    """A point's run folder (the pipeline's runs dir is `sweep_dir/points`)."""
    return Path(sweep_dir) / POINTS / point
