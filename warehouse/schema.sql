-- The triplet warehouse: one DuckDB file per run (runs/<name>/warehouse.duckdb).
-- Stages write parquet shards; a single step per stage loads or registers them here.
-- Every table has exactly one writer stage (warehouse/contracts.py TABLE_WRITERS):
--   documents: ingest; triplets, extraction_errors: extract;
--   entities, relations, aliases, canonical_ids: canonicalize;
--   evaluations, metrics, extraction_scores: evaluate;
--   stage_runs: the pipeline itself (one row per executed stage).
-- Views over the shard folders (docs_shards, triplet_shards, tokens_shards, memory_shards, ...)
-- are created by warehouse.db.register_shard_views once the folders exist.

CREATE TABLE IF NOT EXISTS documents (
    doc_id   VARCHAR PRIMARY KEY,
    shard    INTEGER NOT NULL,
    split    VARCHAR NOT NULL,        -- 'train' | 'val', from a hash of doc_id
    source   VARCHAR NOT NULL,        -- 'synthetic' | 'fineweb' | 'parquet' | 'redocred'
    url      VARCHAR,
    n_chars  INTEGER NOT NULL,
    text     VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS triplets (
    triplet_id  BIGINT PRIMARY KEY,
    doc_id      VARCHAR NOT NULL,
    shard       INTEGER NOT NULL,
    subject     VARCHAR NOT NULL,     -- surface strings after coreference
    relation    VARCHAR NOT NULL,
    object      VARCHAR NOT NULL,
    negated     BOOLEAN NOT NULL,
    char_start  INTEGER NOT NULL,     -- span of the clause that states the triplet
    char_end    INTEGER NOT NULL,
    confidence  FLOAT,
    extractor   VARCHAR NOT NULL      -- 'oracle' | 'spacy' | 'vllm:<model>'
);

CREATE TABLE IF NOT EXISTS canonical_ids (
    triplet_id  BIGINT PRIMARY KEY,   -- triplets.triplet_id
    subject_id  BIGINT NOT NULL,      -- entities.entity_id
    relation_id BIGINT NOT NULL,      -- relations.relation_id
    object_id   BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS entities (
    entity_id BIGINT PRIMARY KEY,
    name      VARCHAR NOT NULL UNIQUE,  -- canonical (normalized) name
    mentions  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS relations (
    relation_id BIGINT PRIMARY KEY,
    name        VARCHAR NOT NULL UNIQUE,  -- canonical relation (lower case, verb lemma)
    functional  BOOLEAN NOT NULL,         -- single-valued: a newer value replaces an older one
    mentions    BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS aliases (
    alias     VARCHAR NOT NULL,           -- surface form as extracted
    entity_id BIGINT NOT NULL,
    doc_id    VARCHAR,                    -- NULL for corpus-wide merges
    method    VARCHAR NOT NULL            -- 'normalize' | 'doc_merge' | 'embedding'
);

CREATE TABLE IF NOT EXISTS stage_runs (
    stage       VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,         -- the stage's cache key
    started_at  TIMESTAMP NOT NULL,
    seconds     DOUBLE NOT NULL,
    status      VARCHAR NOT NULL,         -- 'completed' | 'failed'
    counts      JSON                      -- row counts and named drop reasons
);

-- The evaluate stage's history: one row per evaluation (a run of the stage with new figures),
-- its figures in metrics and extraction_scores; the newest recorded_at is the current one.
CREATE TABLE IF NOT EXISTS evaluations (
    evaluation_id      VARCHAR PRIMARY KEY,   -- hash of the config fingerprint and every figure
    config_fingerprint VARCHAR NOT NULL,      -- of the whole run config
    recorded_at        TIMESTAMP NOT NULL,    -- last recorded (re-recording the same one moves it)
    settings           JSON NOT NULL          -- tokenizer vocab, model shape, steps, variants, ...
);

CREATE TABLE IF NOT EXISTS metrics (
    evaluation_id VARCHAR NOT NULL,           -- evaluations.evaluation_id
    variant     VARCHAR NOT NULL,             -- 'window' | 'triplet' | 'raw' | 'full'
    ablation    VARCHAR NOT NULL,             -- 'none' | 'shuffled' | 'oracle' | 'gap:spacy' | ...
    split       VARCHAR NOT NULL,
    metric      VARCHAR NOT NULL,             -- 'bpb', 'recall_bpb', 'recall_acc', 'windows', ...
    bucket_lo   INTEGER,                      -- distance bucket [lo, hi) in tokens of a
    bucket_hi   INTEGER,                      --   recall_acc row; NULL on every other row
    value       DOUBLE NOT NULL,
    ci_lo       DOUBLE,                       -- 95% interval (Wilson; bootstrap over documents)
    ci_hi       DOUBLE,
    n           BIGINT,                       -- sample size: recall spans, or documents for bpb
    step        INTEGER
);

CREATE TABLE IF NOT EXISTS extraction_scores (
    evaluation_id VARCHAR NOT NULL,
    extractor   VARCHAR NOT NULL,             -- 'spacy' | 'vllm:<model>' (scored against oracle)
    metric      VARCHAR NOT NULL,             -- 'strict_p', 'relaxed_f1', 'extracted_triplets', ...
    value       DOUBLE NOT NULL,
    n           BIGINT                        -- what a share is of (extracted or gold triplets)
);

CREATE TABLE IF NOT EXISTS extraction_errors (
    doc_id     VARCHAR NOT NULL,
    shard      INTEGER NOT NULL,
    extractor  VARCHAR NOT NULL,
    error      VARCHAR NOT NULL,
    raw_prefix VARCHAR                    -- first characters of the raw model output
);

-- Triplets with their canonical ids (NULL until canonicalize has run).
CREATE OR REPLACE VIEW canonical_triplets AS
    SELECT t.*, c.subject_id, c.relation_id, c.object_id
    FROM triplets t LEFT JOIN canonical_ids c USING (triplet_id);

-- window_memory (what window k of document d saw: its kept triplets as text, rank 1 = newest,
-- and its recall spans) is a view over the window_shards view, so warehouse/db.py DERIVED_VIEWS
-- creates it with the shard views (README "What did window k of document d see?").
