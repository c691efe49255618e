"""The shards stage: tokens and memory training shards from documents and triplets.

    shards/build.py    the stage (tokens + memory shards, one pair per docs shard)
    shards/spans.py    characters to tokens (a triplet's token_pos, a span's tokens)
    shards/recall.py   recall spans: gold ones, and the real-text heuristic
"""
