"""python -m corpora.fetch on local sources: SpERT -> BILOU, download, check, atomic rename, errors.

Nothing is downloaded from the internet here: the sources are local files, file:// URLs and an
HTTP server on 127.0.0.1 serving a temporary folder; the code path is the one the public URLs take.
"""
import functools
import gzip
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from corpora.conll04 import entity_spans, load_conll04
from corpora.fetch import FetchError, fetch, main, spert_to_conll04

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def as_spert(items: list[dict]) -> list[dict]:
    """CoNLL04 items in SpERT's form, entities listed in reverse so the converter must reorder."""
    out = []
    for item in items:
        spans = entity_spans(item["tags"])
        last = len(spans) - 1
        out.append({"tokens": item["tokens"],
                    "entities": [{"type": item["tags"][a].split("-", 1)[1], "start": a, "end": b}
                                 for a, b in reversed(spans)],
                    "relations": [{"type": r["type"], "head": last - r["head"], "tail": last - r["tail"]}
                                  for r in item["relations"]],
                    "orig_id": item["orig_id"]})
    return out


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log on stderr
        pass


@pytest.fixture
def http_folder(tmp_path):
    """(folder, base URL) of a real HTTP server on 127.0.0.1 serving the folder."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_spert_sentence_becomes_bilou_tags_with_relations_in_tag_order():
    item = {"tokens": ["Ann", "Lee", "works", "for", "Acme", "Steel", "Works", "in", "Oslo", "."],
            "entities": [{"type": "Loc", "start": 8, "end": 9}, {"type": "Peop", "start": 0, "end": 2},
                         {"type": "Org", "start": 4, "end": 7}],
            "relations": [{"type": "Work_For", "head": 1, "tail": 2},
                          {"type": "OrgBased_In", "head": 2, "tail": 0}],
            "orig_id": 7}
    assert spert_to_conll04(item) == {
        "tokens": item["tokens"],
        "tags": ["B-Peop", "L-Peop", "O", "O", "B-Org", "I-Org", "L-Org", "O", "U-Loc", "O"],
        "relations": [{"head": 0, "tail": 1, "type": "Work_For"},
                      {"head": 1, "tail": 2, "type": "OrgBased_In"}],
        "orig_id": 7}


@pytest.mark.parametrize("entities", [
    [{"type": "Peop", "start": 0, "end": 2}, {"type": "Loc", "start": 1, "end": 2}],  # overlap
    [{"type": "Loc", "start": 2, "end": 4}],  # past the last token
    [{"type": "Loc", "start": 1, "end": 1}],  # empty
])
def test_spert_entities_that_do_not_fit_the_tokens_are_refused(entities):
    with pytest.raises(ValueError, match="out of range or overlaps"):
        spert_to_conll04({"tokens": ["a", "b", "c"], "entities": entities, "relations": []})


def test_the_converter_inverts_the_conll04_reader_on_the_fixture():
    items = json.loads((FIXTURES / "conll04_sample.json").read_text())
    assert [spert_to_conll04(x) for x in as_spert(items)] == items


def test_conll04_from_a_local_spert_file_is_converted_checked_and_renamed(tmp_path, capsys):
    items = json.loads((FIXTURES / "conll04_sample.json").read_text())
    source = tmp_path / "spert" / "conll04_dev.json"
    source.parent.mkdir()
    source.write_text(json.dumps(as_spert(items)))
    dest = tmp_path / "data"
    paths = fetch("conll04", dest, {"conll04_dev.json": str(source)})
    assert paths == {"conll04_dev.json": dest / "conll04_dev.json"}
    assert files_in(dest) == ["conll04_dev.json"]  # no temporary file left
    assert json.loads(paths["conll04_dev.json"].read_text()) == items
    assert [d.text for d in load_conll04(paths["conll04_dev.json"])] == \
        [d.text for d in load_conll04(FIXTURES / "conll04_sample.json")]
    out = capsys.readouterr().out
    assert out.splitlines() == [f"{dest / 'conll04_dev.json'}: downloading {source}",
                                f"conll04: 10 sentences, 14 relations ({dest})"]

    mtime = paths["conll04_dev.json"].stat().st_mtime_ns
    source.unlink()  # an existing file is kept: the source is not even read
    assert fetch("conll04", dest) == paths
    assert paths["conll04_dev.json"].stat().st_mtime_ns == mtime
    assert capsys.readouterr().out.splitlines()[0] == f"{dest / 'conll04_dev.json'}: exists, kept"


def test_redocred_over_http_and_file_urls_gunzips_the_relation_names(tmp_path, http_folder):
    folder, base = http_folder
    (folder / "dev_revised.json").write_bytes((FIXTURES / "redocred_dev_sample.json").read_bytes())
    rel_gz = tmp_path / "rel_info.json.gz"
    rel_gz.write_bytes(gzip.compress((FIXTURES / "docred_rel_info.json").read_bytes()))
    dest = tmp_path / "data"
    assert main(["redocred", "--dest", str(dest),
                 "--url", f"redocred_dev.json={base}/dev_revised.json",
                 "--url", f"docred_rel_info.json={rel_gz.as_uri()}"]) == 0
    assert files_in(dest) == ["docred_rel_info.json", "redocred_dev.json"]
    assert (dest / "redocred_dev.json").read_bytes() == (FIXTURES / "redocred_dev_sample.json").read_bytes()
    assert json.loads((dest / "docred_rel_info.json").read_text()) == \
        json.loads((FIXTURES / "docred_rel_info.json").read_text())


def test_an_http_error_is_one_line_and_leaves_nothing(tmp_path, http_folder, capsys):
    _, base = http_folder
    assert main(["conll04", "--dest", str(tmp_path / "data"),
                 "--url", f"conll04_dev.json={base}/missing.json"]) == 2
    err = capsys.readouterr().err
    assert err == f"corpora.fetch: cannot download {base}/missing.json: HTTP Error 404: File not found\n"
    assert files_in(tmp_path / "data") == []


def test_unreachable_network_is_one_line_exit_2_and_leaves_nothing(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/conll04_dev.json"
    out = subprocess.run([sys.executable, "-m", "corpora.fetch", "conll04", "--dest",
                          str(tmp_path / "data"), "--url", f"conll04_dev.json={url}"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith(f"corpora.fetch: cannot download {url}: ")
    assert "Connection refused" in out.stderr
    assert files_in(tmp_path / "data") == []


def test_a_file_the_loader_rejects_is_never_renamed_into_place(tmp_path, capsys):
    not_docred = tmp_path / "dev.json"
    not_docred.write_text('[{"title": "x", "sents": [["a"]]}]')
    dest = tmp_path / "data"
    assert main(["redocred", "--dest", str(dest), "--url", f"redocred_dev.json={not_docred}",
                 "--url", f"docred_rel_info.json={FIXTURES / 'docred_rel_info.json'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"corpora.fetch: {not_docred}: document 0 is not in DocRED format (KeyError")
    assert files_in(dest) == []  # neither file: the relation names are not kept on their own

    few_names = tmp_path / "rel_info.json"
    few_names.write_text('{"P17": "country"}')
    with pytest.raises(FetchError, match=f"^{re.escape(str(few_names))}: no name for relation ids P"):
        fetch("redocred", dest, {"redocred_dev.json": str(FIXTURES / "redocred_dev_sample.json"),
                                 "docred_rel_info.json": str(few_names)})
    assert files_in(dest) == []


def test_a_source_that_is_not_spert_json_is_one_line(tmp_path, capsys):
    bad = tmp_path / "conll04_dev.json"
    bad.write_text('[{"tokens": ["a"], "entities": [{"type": "Loc", "start": 0}], "relations": []}]')
    assert main(["conll04", "--dest", str(tmp_path / "data"), "--url", f"conll04_dev.json={bad}"]) == 2
    assert capsys.readouterr().err == (
        f"corpora.fetch: {bad}: cannot convert to conll04_dev.json "
        "(sentence 0 is not SpERT JSON (KeyError: 'end'))\n")


def test_url_must_name_a_file_of_the_data_set(tmp_path, capsys):
    assert main(["conll04", "--dest", str(tmp_path), "--url", "redocred_dev.json=x.json"]) == 2
    assert capsys.readouterr().err == (
        "corpora.fetch: --url names redocred_dev.json, but conll04 has conll04_dev.json\n")
    with pytest.raises(SystemExit) as exit_:
        main(["conll04", "--url", "no-equals-sign"])
    assert exit_.value.code == 2 and "expected NAME=SOURCE" in capsys.readouterr().err


@pytest.mark.benchmark_data
def test_the_converter_reproduces_the_full_conll04_dev_file(benchmark_file, tmp_path):
    full = benchmark_file("conll04_dev.json")
    items = json.loads(full.read_text())
    source = tmp_path / "spert.json"
    source.write_text(json.dumps(as_spert(items)))
    paths = fetch("conll04", tmp_path / "data", {"conll04_dev.json": str(source)})
    assert json.loads(paths["conll04_dev.json"].read_text()) == items
