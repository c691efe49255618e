"""The run config: one YAML file = one run, validated whole before anything runs.

Every section is a strict pydantic model (unknown keys are errors). `load_config(path)` returns a
`RunConfig` or raises `ConfigError` whose message is one line naming the file and the field, e.g.

    configs/bad.yaml: ingest.synthetik: unknown key
    configs/bad.yaml: model.n_head: n_embd (128) must be divisible by n_head (3): ...

CLIs print that line and exit with status 2 (`exit_on_config_error`). Components own their
sections: a corpus source its `ingest.<source>` block (the table in corpora/sources.py), an
extraction backend its `extract.<backend>` block (extraction/registry.py); training variants
come from model/variants.py. Validation also builds every variant's model config, so a model shape
that cannot be built (n_embd not divisible by n_head, flash without flash-attn) or a batch that
does not divide fails here, not inside torchrun. Relative input paths are resolved against the
current directory (the repository root in the README's commands), so the resolved config written
into the run folder is portable to workers that start elsewhere.

Each stage's cache key uses its own section only (`stage_section`), so changing, say,
`train.steps` reruns training and what follows, never extraction; each variant's training uses
the settings that variant reads (`train.full_context_cap` retrains `full` only).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, NoReturn

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from configs.base import Section, folder_name
from configs.sweep import SweepConfig
from extraction.coref import CorefConfig

# how many processes do a stage's work, and where: never what the work produces, so outside keys
HOW_MANY_PROCESSES = ("workers", "task_runner", "task_runner_options")
STAGES: tuple[str, ...] = (
    "ingest", "tokenizer", "extract", "canonicalize", "shards", "train", "evaluate", "report",
)


class ConfigError(ValueError):
    """A config problem, as one line naming the file and the field."""


# ---------------------------------------------------------------- sections owned by components

def _default_section(section: type[Section]) -> Section | None:
    """A section with every field at its default, or None when some field is required."""
    try:
        return section()
    except ValidationError:
        return None


class ComponentBlocks(Section):
    """A section whose other keys are the blocks of registered components (`ingest.<source>`,
    `extract.<backend>`), each validated by the component's own section class."""
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    kind: ClassVar[str] = "component"

    @classmethod
    def components(cls) -> dict[str, type[Section] | None]:
        raise NotImplementedError

    @model_validator(mode="before")
    @classmethod
    def _blocks(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        components = cls.components()
        for key, value in list(data.items()):
            if key in cls.model_fields:
                continue
            section = components.get(key)
            if section is None:
                raise ValueError(f"{key}: unknown key")
            if not isinstance(value, section):
                data[key] = section.model_validate(value)
        for name, section in components.items():
            if section is not None and name not in data and (default := _default_section(section)):
                data[name] = default
        return data

    def section(self, name: str) -> Section:
        """The block of component `name`."""
        block = (self.model_extra or {}).get(name)
        if block is None:
            raise KeyError(f"no {self.kind} block {name!r}")
        return block


# ---------------------------------------------------------------- ingest

class IngestConfig(ComponentBlocks):
    kind: ClassVar[str] = "ingest source"
    source: str = "synthetic"
    docs_per_shard: int = Field(256, ge=1, le=1_000_000)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    # documents shorter are dropped (`short_doc`): memory needs context evicted past the window
    min_chars: int = Field(0, ge=0, le=10**8)

    @classmethod
    def components(cls) -> dict[str, type[Section] | None]:
        from corpora.sources import SOURCES
        return {name: s.section for name, s in SOURCES.items()}

    @model_validator(mode="after")
    def _source_known(self) -> "IngestConfig":
        components = self.components()
        if self.source not in components:
            raise ValueError(f"source {self.source!r} is not a corpus source; choose one of "
                             f"{', '.join(components)} (corpora/sources.py)")
        if self.source not in (self.model_extra or {}):
            raise ValueError(f"source is {self.source!r} but the {self.source!r} section is missing")
        return self


# ---------------------------------------------------------------- tokenizer

class TokenizerConfig(Section):
    vocab_size: int = Field(4096, ge=260, le=2**20)  # byte alphabet + specials + merges
    max_train_docs: int | None = Field(None, ge=1, le=10**9)


# ---------------------------------------------------------------- extract / canonicalize

class ExtractConfig(ComponentBlocks):
    kind: ClassVar[str] = "extraction backend"
    # Every listed backend runs; triplet rows carry `extractor`, and train.memory_source picks one.
    backends: list[str] = ["oracle", "spacy"]
    coref: CorefConfig = CorefConfig()
    # processes extracting shards side by side (extraction/stage.py; GPU backends: one engine per
    # worker); inside a flow they are a Prefect task runner: `task_runner` "module:Class" names
    # another one (e.g. "prefect_dask:DaskTaskRunner") and `task_runner_options` its arguments
    workers: int = Field(1, ge=1, le=1024)
    task_runner: str | None = None
    task_runner_options: dict[str, Any] = {}

    @classmethod
    def components(cls) -> dict[str, type[Section] | None]:
        from extraction.registry import BACKENDS
        return {name: b.section for name, b in BACKENDS.items()}

    @field_validator("backends")
    @classmethod
    def _backends_known(cls, backends: list[str]) -> list[str]:
        from extraction.registry import BACKENDS
        if len(set(backends)) != len(backends):
            raise ValueError("backends are listed twice")
        for name in backends:
            if name not in BACKENDS:
                raise ValueError(f"{name!r} is not an extraction backend; choose from "
                                 f"{', '.join(BACKENDS)} (extraction/registry.py)")
            missing = BACKENDS[name].missing()
            if missing:
                raise ValueError(f"backend {name!r} {missing}")
        return backends


class CanonicalizeConfig(Section):
    embedding_model: str | None = None  # a locally installed sentence-embedding model, or none
    similarity_threshold: float = Field(0.9, gt=0, le=1)


class ShardsConfig(Section):
    # Real text has no gold recall spans: an object counts as recalled when it was stated only in
    # text at least this many tokens back (see shards/recall.py for the heuristic).
    recall_min_object_chars: int = Field(3, ge=1)
    workers: int | None = Field(None, ge=1, le=1024)  # processes building shards; None = by CPU cores and shards


# ---------------------------------------------------------------- model / train / evaluate

class ModelConfig(Section):
    """The model's shape; model.gpt.GPTConfig.from_model_config turns it into the GPT's config
    (the one place that maps these fields)."""
    depth: int = Field(2, ge=1, le=512)
    n_embd: int | None = Field(None, ge=8, le=2**15)  # default: derived from depth (nanochat's dial)
    n_head: int | None = Field(None, ge=1, le=2**10)
    sequence_len: int = Field(64, ge=8, le=2**20)  # the window T
    memory_slots: int = Field(16, ge=0, le=2**16)  # M
    attn_backend: Literal["auto", "sdpa", "flex", "flash"] = "auto"
    triplet_encoder: Literal["tokens", "vocab"] = "tokens"
    memory_rope: Literal["unrotated", "fixed"] = "unrotated"
    id_buckets: int = Field(4096, ge=1, le=2**24)  # hashed buckets for the `vocab` encoder
    short_conv: int = Field(0, ge=0, le=1024)  # causal token-convolution kernel per block, 0 = none (model/gpt.py)
    tie_embeddings: bool = False  # the head is the token embedding (model/gpt.py)
    kv_layer_stride: int = Field(3, ge=1, le=512)  # `kv` variant: memory keys/values in layers 0, k, 2k, ...


class WandbConfig(Section):
    mode: Literal["offline", "disabled", "online"] = "disabled"
    project: str = "triplet-context-compression"


def _built_in_variants() -> list[str]:
    from model.variants import BUILT_IN
    return list(BUILT_IN)


class TrainConfig(Section):
    variants: list[str] = Field(default_factory=_built_in_variants)  # of model/variants.py
    memory_source: str = "oracle"  # the extraction backend whose memory variants train on
    nproc_per_node: int = Field(1, ge=1, le=1024)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    steps: int = Field(300, ge=1, le=10**9)
    device_batch_size: int = Field(16, ge=1, le=2**16)
    total_batch_size: int | None = Field(None, ge=1, le=2**40)  # tokens per optimizer step; None = one micro-batch per rank
    matrix_lr: float = Field(0.02, gt=0)  # Muon
    embedding_lr: float = Field(0.01, gt=0)  # AdamW
    weight_decay: float = Field(0.0, ge=0)
    recall_loss_weight: float = Field(1.0, ge=1)  # recall tokens count this many times in the objective
    warmup_steps: int = Field(20, ge=0, le=10**9)
    warmdown_frac: float = Field(0.3, ge=0, le=1)
    checkpoint_every: int = Field(100, ge=1, le=10**9)
    full_context_cap: int = Field(1024, ge=1, le=2**20)  # `full` variant: earlier raw tokens kept at most
    # `pooled` variant: evicted tokens per chunk; None = the triplet memory's measured compression
    # (evicted tokens per slot on the train split, measured when training starts)
    chunk_tokens: int | None = Field(None, ge=1, le=2**20)
    text_uncut: bool = False  # `text` variant: write every kept fact, not only the last M tokens
    compile: bool = False
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    seed: int = 1337
    wandb: WandbConfig = WandbConfig()

    @field_validator("variants")
    @classmethod
    def _variants_known(cls, variants: list[str]) -> list[str]:
        from model.variants import VARIANTS
        if not variants or len(set(variants)) != len(variants):
            raise ValueError("variants must be a non-empty list without repeats")
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a training variant; choose from "
                             f"{', '.join(VARIANTS)} (model/variants.py)")
        return variants

    @field_validator("chunk_tokens")
    @classmethod
    def _chunk_fits_the_encoder(cls, chunk_tokens: int | None) -> int | None:
        from model.memory import MAX_SURFACE_TOKENS
        if chunk_tokens is not None and chunk_tokens > 3 * MAX_SURFACE_TOKENS:
            raise ValueError(f"at most {3 * MAX_SURFACE_TOKENS}: a chunk is pooled as the "
                             f"TripletEncoder's three parts of {MAX_SURFACE_TOKENS} tokens")
        return chunk_tokens


class KeyTokensConfig(Section):
    # LongPPL's key tokens (model/key_tokens.py), chosen by the `full` variant when the run trains
    # it: the long context adds >= min_gain nats of log-probability (the paper's LSD > 2) and
    # leaves the loss <= max_loss nats (LCL > -2).
    enabled: bool = True
    min_gain: float = Field(2.0, gt=0)
    max_loss: float = Field(2.0, gt=0)


class EvaluateConfig(Section):
    # Evaluation-time ablations of the variants they apply to (model/variants.py); the unablated
    # row is always evaluated (ablation "none"): memory removed, memory from another document,
    # or an extraction backend's memory in place of the trained one.
    ablations: list[str] = ["no_memory", "shuffled", "oracle"]
    max_windows: int | None = Field(None, ge=1, le=10**9)  # cap on val windows per variant
    batch_size: int = Field(32, ge=1, le=2**16)
    key_tokens: KeyTokensConfig = KeyTokensConfig()


class ReportConfig(Section):
    title: str | None = None


# ---------------------------------------------------------------- the run

class RunConfig(Section):
    name: str
    seed: int = 0
    ingest: IngestConfig = IngestConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    extract: ExtractConfig = ExtractConfig()
    canonicalize: CanonicalizeConfig = CanonicalizeConfig()
    shards: ShardsConfig = ShardsConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    report: ReportConfig = ReportConfig()
    sweep: SweepConfig = SweepConfig()  # python -m flows.sweep only (configs/sweep.py); no stage reads it

    @field_validator("name")
    @classmethod
    def _name_is_folder(cls, name: str) -> str:
        return folder_name(name)

    @model_validator(mode="after")
    def _sources_extracted(self) -> "RunConfig":
        from corpora.sources import SOURCES
        from extraction.registry import BACKENDS
        from model.variants import ABLATION_KINDS
        if self.train.memory_source not in self.extract.backends:
            raise ValueError(
                f"train.memory_source is {self.train.memory_source!r} but extract.backends is "
                f"{self.extract.backends}: add it there")
        for ablation in self.evaluate.ablations:
            if ablation in BACKENDS:
                if ablation not in self.extract.backends:
                    raise ValueError(f"evaluate.ablations has {ablation!r} but extract.backends lacks it")
            elif ablation not in ABLATION_KINDS or ablation == "memory_source":
                raise ValueError(f"evaluate.ablations: {ablation!r} is neither no_memory, shuffled "
                                 f"nor an extraction backend ({', '.join(BACKENDS)})")
        if not SOURCES[self.ingest.source].has_gold:
            needs_gold = [b for b in self.extract.backends if BACKENDS[b].needs_gold]
            if needs_gold:
                raise ValueError(f"extract.backends has {needs_gold[0]!r} but source "
                                 f"{self.ingest.source!r} has no gold triplets")
        return self


def check_buildable(cfg: RunConfig) -> tuple[str, str] | None:
    """(field, problem) when some variant's model or the batch cannot be built, or a training
    step would not fit this machine's memory (model/resources.py's estimate), else None."""
    from model.gpt import GPTConfigError
    from model.resources import device_memory, gigabytes, training_memory
    from model.variants import gpt_config, variant_of
    device_name, available = device_memory(cfg.train.device)
    for variant in cfg.train.variants:
        if variant_of(variant).memory is not None and cfg.model.memory_slots == 0:
            return "model.memory_slots", f"variant {variant!r} needs memory slots (> 0)"
        if problem := variant_of(variant).problem(cfg):
            return problem
        try:
            model_cfg = gpt_config(cfg, variant, cfg.tokenizer.vocab_size)
        except GPTConfigError as err:  # GPTConfig's n_layer is the section's depth
            return f"model.{'depth' if err.field == 'n_layer' else err.field}", str(err)
        on_gpu = device_name != "this machine"  # bf16 autocast and a fused attention kernel there
        need = training_memory(model_cfg, cfg.train.device_batch_size,
                               "flash" if on_gpu else "sdpa", bf16=on_gpu)
        if available is not None and need.total > available:
            return ("model", f"training {variant!r} needs about {gigabytes(need.total)} per process "
                    f"(weights {gigabytes(need.weights)}, optimizer {gigabytes(need.optimizer)}, "
                    f"activations {gigabytes(need.activations)}, logits {gigabytes(need.logits)}), "
                    f"more than {device_name}'s {gigabytes(available)}: lower model.depth / n_embd "
                    "/ sequence_len, tokenizer.vocab_size or train.device_batch_size")
    total = cfg.train.total_batch_size
    per_micro_step = cfg.train.device_batch_size * cfg.model.sequence_len * cfg.train.nproc_per_node
    if total is not None and total % per_micro_step:
        return ("train.total_batch_size",
                f"{total} must be a multiple of device_batch_size x model.sequence_len x "
                f"nproc_per_node ({per_micro_step}): change it or device_batch_size")
    return None


def input_files(cfg: RunConfig) -> list[dict[str, Any]]:
    """Size, modification time and content hash of every local file the corpus source reads."""
    from configs.fingerprint import file_content_hash
    from corpora.sources import SOURCES
    source = SOURCES[cfg.ingest.source]
    files = sorted(Path(p).resolve() for p in source.inputs(cfg.ingest.section(source.name)))
    out = []
    for path in files:
        stat = path.stat()
        out.append({"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                    "sha256": file_content_hash(path, stat.st_size, stat.st_mtime_ns)})
    return out


def stage_section(cfg: RunConfig, stage: str, variant: str | None = None) -> dict[str, Any]:
    """The part of the config a stage's output depends on (its cache key uses only this); the
    ingest stage's includes the fingerprints of the corpus files it reads.

    Training is one stage per variant: with `variant`, the train section is the settings that
    variant reads (model.variants.training_settings), so a sweep over a setting only some
    variants read retrains only those."""
    from corpora.sources import SOURCES
    if stage == "train":
        if variant is None:
            raise KeyError("the train stage's section is per variant: pass variant=")
        from model.variants import training_settings
        return training_settings(cfg, variant)
    from warehouse.contracts import window_memory_depth
    # the windows shards cut documents into T-token windows and record this many kept triplets
    shards: dict[str, Any] = {"shards": cfg.shards, "window_len": cfg.model.sequence_len,
                              "window_memory_depth": window_memory_depth(cfg.model.memory_slots)}
    if "recall" not in SOURCES[cfg.ingest.source].side_kinds:
        # real-text recall tokens depend on the reach of the window + memory (T + M); gold
        # recall spans (a source's `recall` shards) do not
        shards["recall_reach"] = cfg.model.sequence_len + cfg.model.memory_slots
    sections = {
        "ingest": {"seed": cfg.seed, "ingest": cfg.ingest, "input_files": input_files(cfg)},
        "tokenizer": {"tokenizer": cfg.tokenizer},
        "extract": {"extract": cfg.extract.model_dump(mode="json", exclude=set(HOW_MANY_PROCESSES))},
        "canonicalize": {"canonicalize": cfg.canonicalize},
        "shards": shards,  # its `workers` is taken out below
        "evaluate": {"evaluate": cfg.evaluate},
        "report": {"report": cfg.report},
    }
    if stage not in sections:
        raise KeyError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    out = {k: (v.model_dump(mode="json") if isinstance(v, BaseModel) else v)
           for k, v in sections[stage].items()}
    if stage == "shards":
        out["shards"].pop("workers")
    return out


def _field_path(loc: tuple[Any, ...]) -> str:
    # pydantic puts tagged-union/validator names in loc; keep only the config's own keys
    return ".".join(str(p) for p in loc if not str(p).startswith("function-")) or "(top level)"


def _one_line(err: ValidationError, source: str, prefix: tuple[str, ...] = ()) -> str:
    first = err.errors()[0]
    field = _field_path((*prefix, *first["loc"]))
    if first["type"] == "extra_forbidden":
        return f"{source}: {field}: unknown key"
    if first["type"] == "missing":
        return f"{source}: {field}: required field is missing"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{source}: {field}: {msg}"


def _check_component_blocks(data: dict[str, Any], source: str) -> None:
    """Validate `ingest.<source>` / `extract.<backend>` blocks with their owners' sections first,
    so an error names its full path (ingest.synthetic.num_docs)."""
    for name, section in (("ingest", IngestConfig), ("extract", ExtractConfig)):
        block = data.get(name)
        if not isinstance(block, dict):
            continue
        components = section.components()
        for key, value in block.items():
            if key in section.model_fields:
                continue
            if components.get(key) is None:
                raise ConfigError(f"{source}: {name}.{key}: unknown key")
            try:
                components[key].model_validate(value)
            except ValidationError as err:
                raise ConfigError(_one_line(err, source, (name, key))) from None


def parse_config(data: Any, source: str = "<config>") -> RunConfig:
    """Validate an already-loaded mapping, the model shapes it implies included."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of sections, got {type(data).__name__}")
    _check_component_blocks(data, source)
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_one_line(err, source)) from None
    problem = check_buildable(cfg)
    if problem:
        raise ConfigError(f"{source}: {problem[0]}: {problem[1]}")
    return cfg


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML config; raises ConfigError with one line naming file and field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    return parse_config(data, str(path))


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (defaults filled in, paths absolute)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def exit_on_config_error(err: ConfigError) -> NoReturn:
    print(f"config error: {err}", file=sys.stderr)
    raise SystemExit(2)


def load_config_or_exit(path: str | Path) -> RunConfig:
    """For CLIs: the validated config, or the one-line error and exit status 2."""
    try:
        return load_config(path)
    except ConfigError as err:
        exit_on_config_error(err)


def stage_main(doc: str, work: Callable[[RunConfig, Path], dict[str, Any]],
               errors: tuple[type[Exception], ...], argv: list[str] | None = None) -> None:
    """`python -m <stage module> --config C --run R`: one stage's plain function, without Prefect.

    Bad input the stage reports as one of `errors`, a run folder in use, an unreadable input
    shard or a full disk ends as one line and exit status 1.
    """
    import argparse
    import logging
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", required=True, type=Path, help="the run folder, e.g. runs/tiny")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import duckdb
    from warehouse.run_lock import RunLocked, run_lock
    from warehouse.shard_io import NoSpaceLeft, UnreadableShard
    cfg = load_config_or_exit(args.config)
    try:
        with run_lock(args.run):
            result = work(cfg, args.run)
    except (*errors, RunLocked, NoSpaceLeft, UnreadableShard) as err:
        raise SystemExit(f"error: {err}") from None
    except duckdb.IOException as err:  # the warehouse file's own writes
        if "No space left" not in str(err):
            raise
        raise SystemExit(f"error: no space left on {args.run} (writing warehouse.duckdb)") from None
    print(result.get("rows", {}), result.get("counters", {}))
