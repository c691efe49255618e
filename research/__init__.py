"""Research tools: benchmarks and probes that look inside the model, not stages of the pipeline.

    python -m research.probe_recall --config configs/tiny.yaml     # where recall errors go
    python -m research.bench_lookup --facts 6 --slots 8 --short-conv 4 --keys 10   # the lookup toy
    python -m research.bench_memory speed                          # triplet vs window step time

research/toy_lookup.py is the toy lookup task on real shards that the model tests train on.
"""
