"""Byte-level BPE tokenizer: training, fast batch encoding, exact character offsets, bytes per token.

A thin wrapper over HF `tokenizers`. Any text encodes (the 256 byte symbols are always in the
vocabulary), `decode(encode(text)) == text`, and the one special token `<|bos|>` is never produced
from text, even text that spells it. The tokenizer stage trains it on the train split of the docs
shards and saves `runs/<name>/tokenizer/tokenizer.json`:

    from model.tokenizer import train_tokenizer, load_run_tokenizer
    tok = train_tokenizer(["some text", ...], vocab_size=4096)
    ids = tok.encode("café")          # no <|bos|>; prepend tok.bos_id yourself
    tok = load_run_tokenizer(Path("runs/tiny"))
"""
from __future__ import annotations

from itertools import accumulate, islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from configs.schema import RunConfig
from warehouse.shard_io import list_shards, read_shard, write_text_atomically

BOS = "<|bos|>"
TOKENIZER_FILE = Path("tokenizer") / "tokenizer.json"
_TRAIN_BATCH = 1024  # texts handed to the trainer at a time


class TextTokenizer:
    """A trained byte-level BPE tokenizer (wraps `tokenizers.Tokenizer`)."""

    def __init__(self, tokenizer: Tokenizer):
        bos_id = tokenizer.token_to_id(BOS)
        if bos_id is None:
            raise ValueError(f"tokenizer has no {BOS} token; retrain it with train_tokenizer")
        # text that spells "<|bos|>" is encoded as its bytes, never as the special token
        tokenizer.encode_special_tokens = True
        self._tok = tokenizer
        self.bos_id: int = bos_id
        self.vocab_size: int = tokenizer.get_vocab_size()
        self._token_bytes = self._count_token_bytes()

    def _count_token_bytes(self) -> list[int]:
        # every symbol of a byte-level token stands for one byte
        counts = [0] * self.vocab_size
        for token, i in self._tok.get_vocab().items():
            if i != self.bos_id:
                counts[i] = len(token)
        return counts

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Encode many texts in parallel (no offsets computed: the fast path)."""
        return [e.ids for e in self._tok.encode_batch_fast(texts, add_special_tokens=False)]

    def encode_batch_with_offsets(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Token ids and the character span of each token.

        A character belongs to the token that holds its last UTF-8 byte, so spans are contiguous,
        monotone and cover the text; tokens that hold only leading bytes of a character that a
        later token completes get an empty span. Hence "the first token whose start is >= c" is
        the first token lying entirely at or after character c.
        """
        return [(ids, self.char_offsets(text, ids)) for text, ids in zip(texts, self.encode_batch(texts))]

    def char_offsets(self, text: str, ids: list[int]) -> list[tuple[int, int]]:
        """The character span of each token of `ids`, which decode to `text` (any ids: a model's
        output need not be the text's own encoding), as `encode_batch_with_offsets` says."""
        byte_ends = list(accumulate(self._token_bytes[i] for i in ids))
        data = text.encode("utf-8")
        if len(data) == len(text):  # ASCII: bytes are characters
            char_ends = byte_ends
        else:
            # char_after_byte[b] = characters completed within the first b bytes
            continuation = (np.frombuffer(data, dtype=np.uint8) & 0xC0) == 0x80
            is_last_byte = np.append(~continuation[1:], True)  # no continuation byte follows
            char_after_byte = np.concatenate([[0], np.cumsum(is_last_byte)])
            char_ends = char_after_byte[byte_ends].tolist()
        return list(zip([0, *char_ends[:-1]], char_ends))

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)

    def token_bytes(self) -> list[int]:
        """UTF-8 bytes each token id stands for (0 for `<|bos|>`), for bits per byte."""
        return list(self._token_bytes)

    def save(self, path: Path) -> Path:
        """Write the tokenizer JSON atomically (temporary file, then rename)."""
        return write_text_atomically(self._tok.to_str(), Path(path))

    @classmethod
    def load(cls, path: Path) -> "TextTokenizer":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no tokenizer here (run the tokenizer stage first)")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises plain Exception on malformed JSON
            raise ValueError(f"{path}: not a tokenizer file ({str(err).splitlines()[0]}); "
                             "rerun the tokenizer stage") from None
        return cls(tokenizer)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> TextTokenizer:
    """Train byte-level BPE with `<|bos|>`; the vocabulary may come out smaller on tiny corpora."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[BOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = iter(texts)
    batches = iter(lambda: list(islice(texts, _TRAIN_BATCH)), [])
    tokenizer.train_from_iterator(batches, trainer=trainer)
    return TextTokenizer(tokenizer)


def _train_texts(shards: list[Path], max_docs: int | None, stats: dict[str, int],
                 on_progress: Callable[[int, int], None] | None) -> Iterator[str]:
    """Texts of the train split, shard by shard, reading only the `text` and `split` columns."""
    for done, shard in enumerate(shards, 1):
        table = read_shard(shard, ["text", "split"])
        for text, split in zip(table.column("text").to_pylist(), table.column("split").to_pylist()):
            if split != "train":
                continue
            if max_docs is not None and stats["train_docs"] >= max_docs:
                if on_progress:
                    on_progress(len(shards), len(shards))  # the cap ends the work early
                return
            stats["train_docs"] += 1
            stats["train_chars"] += len(text)
            yield text
        if on_progress:
            on_progress(done, len(shards))


def run_tokenizer(cfg: RunConfig, run_dir: Path,
                  on_progress: Callable[[int, int], None] | None = None) -> dict:
    """The tokenizer stage: train on the train split of docs shards, save tokenizer/tokenizer.json."""
    shards = list_shards(run_dir, "docs")
    if not shards:
        raise FileNotFoundError(f"{Path(run_dir) / 'docs'}: no docs shards (run the ingest stage first)")
    stats = {"train_docs": 0, "train_chars": 0}
    texts = _train_texts(shards, cfg.tokenizer.max_train_docs, stats, on_progress)
    tok = train_tokenizer(texts, cfg.tokenizer.vocab_size)
    if stats["train_docs"] == 0:
        raise ValueError(f"{Path(run_dir) / 'docs'}: the docs shards hold no train-split documents")
    tok.save(Path(run_dir) / TOKENIZER_FILE)
    return {"outputs": [str(TOKENIZER_FILE)],
            "rows": {"vocab_size": tok.vocab_size, **stats},
            "counters": {}}


def load_run_tokenizer(run_dir: Path) -> TextTokenizer:
    return TextTokenizer.load(Path(run_dir) / TOKENIZER_FILE)
