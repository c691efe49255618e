"""The engine: KV-cached generation from a trained run, with a live triplet memory.

    python -m engine generate --run runs/tiny --variant triplet --prompt-file story.txt --max-new-tokens 64
    python -m engine chat --run runs/tiny --show-memory
    python -m engine evaluate-live --run runs/tiny

A trained model reads a document in windows of T tokens and sees what came before only through
its variant's context: memory slots (as positions, or as some layers' keys/values), or tokens
before the window (model/variants.py). The engine keeps that contract, for every variant of the
table, while it generates past the window: it holds a KV cache for the current window, slides
the window by whole chunks, and hands the text that leaves it to an extraction sidecar, whose
triplets go through the pipeline's own canonicalization and memory policy, so the memory a model
reads live is the memory it read offline for the same text.

    kv_cache.py       the cached forward (memory keys/values once per memory, tokens appended)
    engine.py         windows, memory updates and sampling for one document (`Engine`)
    sidecar.py        the extraction thread beside generation, with a wait budget
    live_memory.py    text -> memory rows as the pipeline makes them; saved and merged memories
    session.py        a run's checkpoint + tokenizer + live memory + engine; generate and chat
    evaluate_live.py  val documents through the engine next to offline evaluation
    __main__.py       the CLI

Nothing here is a pipeline stage: the engine reads a finished run folder (checkpoints,
tokenizer, warehouse read-only, triplets shards) and writes only the memory files it is asked to.
"""
