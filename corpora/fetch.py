"""Download the full benchmark files into data/: Re-DocRED dev with DocRED's relation names, CoNLL04 dev.

    python -m corpora.fetch redocred [--dest data]   # data/redocred_dev.json, data/docred_rel_info.json
    python -m corpora.fetch conll04 [--dest data]    # data/conll04_dev.json
    python -m corpora.fetch conll04 --url conll04_dev.json=/mirror/conll04_dev.json

These are the files `python -m extraction.score --dataset redocred|conll04` and
configs/redocred.yaml read by default; the tests need none of them (tests/fixtures/ holds small
samples). Sources (SOURCES below):
- Re-DocRED dev (Tan et al. 2022, MIT): `data/dev_revised.json` of github.com/tonytan48/Re-DocRED,
  kept byte for byte (500 Wikipedia introductions);
- DocRED relation names (Yao et al. 2019, MIT): `data/rel_info.json.gz` of the thunlp/docred data
  set on the Hugging Face hub, gunzipped (96 Wikidata property ids -> names);
- CoNLL04 dev (Roth & Yih 2004): SpERT's `conll04_dev.json` (231 sentences; entities as
  [start, end) token spans with a type, relations indexing them), converted to the BILOU form
  corpora/conll04.py reads.
A file that already exists is kept. A missing one is downloaded whole, converted, written to a
temporary name beside its destination and parsed by the repository's own loader (with the
data set's other files); only then is it renamed into place, so a failed fetch leaves nothing
behind. An unreachable source, a conversion or loader error: one line naming the URL or file,
exit status 2. `--url NAME=SOURCE` replaces the source of one file (NAME as written under --dest;
SOURCE an http(s) or file:// URL or a local path): a mirror, or a copy made elsewhere.
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"  # git-ignored; extraction.score's default paths point here
REDOCRED_DEV = "redocred_dev.json"
REL_INFO = "docred_rel_info.json"  # read from beside the Re-DocRED file
CONLL04_DEV = "conll04_dev.json"
TIMEOUT_S = 60


class FetchError(RuntimeError):
    """A source that cannot be downloaded, converted or read by the repository's loader."""


def spert_to_conll04(item: dict[str, Any]) -> dict[str, Any]:
    """One SpERT sentence ({tokens, entities [{type, start, end}], relations [{type, head, tail}],
    orig_id}) in this repository's form: BILOU `tags`, relations indexing entities in tag order."""
    tokens = item["tokens"]
    entities = item["entities"]
    order = sorted(range(len(entities)), key=lambda k: (entities[k]["start"], entities[k]["end"]))
    tags = ["O"] * len(tokens)
    for k in order:
        start, end, kind = entities[k]["start"], entities[k]["end"], entities[k]["type"]
        if not 0 <= start < end <= len(tokens) or any(t != "O" for t in tags[start:end]):
            raise ValueError(f"entity {k} [{start}, {end}) is empty, out of range or overlaps another")
        if end - start == 1:
            tags[start] = f"U-{kind}"
        else:
            tags[start:end] = [f"B-{kind}", *[f"I-{kind}"] * (end - start - 2), f"L-{kind}"]
    position = {old: new for new, old in enumerate(order)}
    relations = [{"head": position[r["head"]], "tail": position[r["tail"]], "type": r["type"]}
                 for r in item["relations"]]
    out: dict[str, Any] = {"tokens": tokens, "tags": tags, "relations": relations}
    if "orig_id" in item:
        out["orig_id"] = item["orig_id"]
    return out


def _spert_file_to_conll04(raw: bytes) -> bytes:
    items = json.loads(raw)
    if not isinstance(items, list):
        raise ValueError(f"expected a JSON list of SpERT sentences, got {type(items).__name__}")
    converted = []
    for i, item in enumerate(items):
        try:
            converted.append(spert_to_conll04(item))
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ValueError(f"sentence {i} is not SpERT JSON ({type(err).__name__}: {err})") from None
    return json.dumps(converted, ensure_ascii=False).encode("utf-8")


def _unchanged(raw: bytes) -> bytes:
    return raw


def _gunzipped(raw: bytes) -> bytes:
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw  # a plain copy passes as it is


def _check_redocred(files: Mapping[str, Path]) -> str:
    from corpora.common import CorpusError
    from corpora.redocred import RedocredSource, redocred_records
    try:
        names = json.loads(files[REL_INFO].read_text(encoding="utf-8"))
        if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
            raise FetchError(f"{files[REL_INFO]}: expected a JSON object of relation id -> name")
        records = list(redocred_records(RedocredSource(path=files[REDOCRED_DEV],
                                                       rel_info=files[REL_INFO])))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, CorpusError) as err:
        raise FetchError(str(err)) from None
    if not records:
        raise FetchError(f"{files[REDOCRED_DEV]}: no documents")
    # a relation id without a name stays the id in the gold triplets
    unnamed = sorted({t.relation for r in records for t in r.gold} - set(names.values()))
    if unnamed:
        raise FetchError(f"{files[REL_INFO]}: no name for relation ids {', '.join(unnamed[:5])}")
    gold = sum(len(r.gold) for r in records)
    return f"{len(records)} documents, {gold} gold triplets, {len(names)} relation names"


def _check_conll04(files: Mapping[str, Path]) -> str:
    from corpora.conll04 import Conll04Error, load_conll04
    try:
        docs = load_conll04(files[CONLL04_DEV])
    except Conll04Error as err:
        raise FetchError(str(err)) from None
    if not docs:
        raise FetchError(f"{files[CONLL04_DEV]}: no sentences")
    return f"{len(docs)} sentences, {sum(len(d.gold) for d in docs)} relations"


@dataclass(frozen=True)
class Source:
    name: str  # the file written under --dest
    url: str
    convert: Callable[[bytes], bytes]  # downloaded bytes -> this repository's format


@dataclass(frozen=True)
class Benchmark:
    files: tuple[Source, ...]
    check: Callable[[Mapping[str, Path]], str]  # parse all files with the repository's loader


SOURCES = {
    "redocred": Benchmark((
        Source(REDOCRED_DEV, "https://raw.githubusercontent.com/tonytan48/Re-DocRED/main/data/"
               "dev_revised.json", _unchanged),
        Source(REL_INFO, "https://huggingface.co/datasets/thunlp/docred/resolve/"
               "7985b4e0371e6c61a756feb41b7b27becf71c666/data/rel_info.json.gz", _gunzipped),
    ), _check_redocred),
    "conll04": Benchmark((
        Source(CONLL04_DEV, "https://lavis.cs.hs-rm.de/storage/spert/public/datasets/conll04/"
               "conll04_dev.json", _spert_file_to_conll04),
    ), _check_conll04),
}


def _as_url(source: str) -> str:
    """A URL as given; a local path as a file:// URL."""
    return source if urllib.parse.urlparse(source).scheme else Path(source).resolve().as_uri()


def download(source: str) -> bytes:
    try:
        with urllib.request.urlopen(_as_url(source), timeout=TIMEOUT_S) as response:
            return response.read()
    except urllib.error.URLError as err:  # HTTPError too: "HTTP Error 404: Not Found"
        reason = err.reason if not isinstance(err, urllib.error.HTTPError) else err
        raise FetchError(f"cannot download {source}: {reason}") from None
    except (OSError, ValueError, http.client.HTTPException) as err:  # timeouts, resets, bad URLs
        raise FetchError(f"cannot download {source}: {err}") from None


def fetch(name: str, dest: Path = DATA_DIR, urls: Mapping[str, str] | None = None,
          say: Callable[[str], None] = print) -> dict[str, Path]:
    """The data set's files under `dest` (missing ones downloaded, converted and checked first)."""
    benchmark = SOURCES[name]
    urls = dict(urls or {})
    unknown = set(urls) - {s.name for s in benchmark.files}
    if unknown:
        raise FetchError(f"--url names {', '.join(sorted(unknown))}, but {name} has "
                         f"{', '.join(s.name for s in benchmark.files)}")
    dest = Path(dest).resolve()
    final = {s.name: dest / s.name for s in benchmark.files}
    pending: dict[str, Path] = {}  # file name -> temporary file, renamed once all pass the check
    used: dict[str, str] = {}  # file name -> the URL it came from
    try:
        for s in benchmark.files:
            if final[s.name].is_file():
                say(f"{final[s.name]}: exists, kept")
                continue
            url = used[s.name] = urls.get(s.name, s.url)
            say(f"{final[s.name]}: downloading {url}")
            raw = download(url)
            try:
                data = s.convert(raw)
            except (ValueError, OSError, EOFError) as err:  # json, gzip and converter errors
                raise FetchError(f"{url}: cannot convert to {s.name} ({err})") from None
            dest.mkdir(parents=True, exist_ok=True)
            tmp = final[s.name].with_name(f".{s.name}.tmp-{os.getpid()}")
            pending[s.name] = tmp
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        try:
            summary = benchmark.check({**final, **pending})
        except FetchError as err:  # name the source, not the temporary file about to go
            message = str(err)
            for file_name, tmp in pending.items():
                message = message.replace(str(tmp), used[file_name])
            raise FetchError(message) from None
        for file_name, tmp in pending.items():
            os.replace(tmp, final[file_name])
    finally:
        for tmp in pending.values():
            tmp.unlink(missing_ok=True)
    say(f"{name}: {summary} ({dest})")
    return final


def _url_option(text: str) -> tuple[str, str]:
    name, sep, source = text.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"expected NAME=SOURCE (e.g. {CONLL04_DEV}=/path/file.json), "
                                         f"got {text!r}")
    return name, source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corpora.fetch",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(SOURCES))
    parser.add_argument("--dest", type=Path, default=DATA_DIR,
                        help="folder to write into (default: the repository's data/)")
    parser.add_argument("--url", type=_url_option, action="append", default=[],
                        metavar="NAME=SOURCE", help="another source for one file (URL or path)")
    args = parser.parse_args(argv)
    try:
        fetch(args.dataset, args.dest, dict(args.url))
    except FetchError as err:
        print(f"corpora.fetch: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
