"""python -m engine on a small real run: generate with --show-memory / --explain / --save-memory /
--memory-from, chat past the window, evaluate-live next to offline evaluate; bad input ends in
one line and exit status 1."""
import io
import shutil

import pytest

from engine.__main__ import main
from engine.live_memory import read_memory
from model.variants import VARIANTS

PROMPT = ("Mara Quell was born in Orvane. Mara Quell works at Tessaly Labs. Ilsa Brandt lives in "
          "Lethull. Ilsa Brandt is a baker. Later, the weeks went by. Tam Orrin was born in Kess. "
          "Tam Orrin knows Mara Quell. Still, Mara Quell worked at")


def run_cli(capsys, *args) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "prompt.txt"
    path.write_text(PROMPT)
    return path


def test_generate_streams_and_shows_memory_and_explains(story_run, prompt_file, tmp_path, capsys):
    _, run_dir = story_run
    saved = tmp_path / "session.parquet"
    code, out, err = run_cli(capsys, "generate", "--run", run_dir, "--variant", "triplet",
                             "--prompt-file", prompt_file, "--max-new-tokens", 6, "--temperature", 0,
                             "--show-memory", "--explain", "--extraction-budget", 30,
                             "--save-memory", saved)
    assert code == 0, err
    lines = out.splitlines()
    explained = lines[lines.index(next(l for l in lines if l.startswith("explain:"))) + 1:][:6]
    assert len(explained) == 6 and all(" memory 0." in l for l in explained)
    memory = next(l for l in lines if l.startswith("memory:"))
    assert memory.startswith("memory: ") and "of 8 slots, window from token" in memory
    assert "(Mara Quell, was born in, Orvane)" in out or "(Mara Quell, born in, Orvane)" in out
    triplets = read_memory(str(saved))
    assert ("Tam Orrin", "Kess") in {(t.subject, t.object) for t in triplets}  # the window's too
    assert f"saved {len(triplets)} triplets to {saved}" in err


def test_merged_memory_is_in_the_window_from_the_first_token(story_run, tmp_path, capsys):
    _, run_dir = story_run
    story_a = tmp_path / "a.txt"
    story_a.write_text(PROMPT + " Tessaly Labs.")
    code, _, err = run_cli(capsys, "generate", "--run", run_dir, "--prompt-file", story_a,
                           "--max-new-tokens", 1, "--save-memory", tmp_path / "a.parquet")
    assert code == 0, err
    story_b = tmp_path / "b.txt"
    story_b.write_text("Still, Mara Quell worked at")  # shorter than a window: nothing evicted
    code, out, err = run_cli(capsys, "generate", "--run", run_dir, "--prompt-file", story_b,
                             "--max-new-tokens", 2, "--temperature", 0, "--show-memory",
                             "--memory-from", f"{run_dir}:syn-000000", tmp_path / "a.parquet")
    assert code == 0, err
    # 8 slots: the newest facts, story A's (given last), then the run document's newest
    assert "8 of 8 slots, window from token 0" in out
    assert "(Mara Quell, works at, Tessaly Labs)" in out and "(Tam Orrin, born in, Kess)" in out


def test_chat_keeps_one_document_past_the_window(story_run, capsys, monkeypatch):
    _, run_dir = story_run
    turns = [PROMPT + " Tessaly Labs.", "", "Ilsa Brandt is a baker. Tam Orrin lives in Kess.",
             "Still, Mara Quell worked at"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(turns) + "\n"))
    code, out, err = run_cli(capsys, "chat", "--run", run_dir, "--max-new-tokens", 4,
                             "--temperature", 0, "--show-memory", "--extraction-budget", 30)
    assert code == 0, err
    assert out.count("> ") == 3  # the empty line is no turn
    starts = [int(l.rsplit(" ", 1)[1]) for l in out.splitlines() if l.startswith("memory:")]
    assert len(starts) == 3 and 0 < starts[0] < starts[-1]  # the conversation slid past windows
    assert "(Mara Quell, works at, Tessaly Labs)" in out


def test_evaluate_live_reports_live_next_to_offline_with_n(story_run, capsys):
    _, run_dir = story_run
    code, out, err = run_cli(capsys, "evaluate-live", "--run", run_dir, "--max-windows", 30)
    assert code == 0, err
    rows = [l for l in out.splitlines() if l.startswith("| offline") or l.startswith("| live")]
    assert len(rows) == 2
    offline, live = ([c.strip() for c in row.split("|")[2:-1]] for row in rows)
    assert offline[1] == live[1] and offline[3] == live[3]  # the same spans and tokens: the same n
    assert "30 val windows" in out and "live memory = offline memory in" in out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_generates_shows_its_context_and_evaluates_live(story_run, prompt_file,
                                                                      capsys, variant):
    _, run_dir = story_run
    entry = VARIANTS[variant]
    code, out, err = run_cli(capsys, "generate", "--run", run_dir, "--variant", variant,
                             "--prompt-file", prompt_file, "--max-new-tokens", 3, "--temperature", 0,
                             "--show-memory", "--explain", "--extraction-budget", 30)
    assert code == 0, err
    lines = out.splitlines()
    explained = lines[lines.index(next(l for l in lines if l.startswith("explain:"))) + 1:][:3]
    assert len(explained) == 3 and all(" memory " in l for l in explained)
    memory = [l for l in lines if l.startswith("memory: ")]
    assert bool(memory and "of 8 slots, window from token" in memory[0]) == (entry.memory is not None)
    prefix = [l for l in lines if l.startswith("prefix: ")]
    assert bool(prefix and "tokens before the window from token" in prefix[0]) == (entry.prefix is not None)
    if entry.memory is None and entry.prefix is None:
        assert memory == [f"memory: variant {variant!r} has none"]

    code, out, err = run_cli(capsys, "evaluate-live", "--run", run_dir, "--variant", variant,
                             "--max-windows", 12)
    assert code == 0, err
    offline, live = ([c.strip() for c in row.split("|")[2:-1]] for row in out.splitlines()
                     if row.startswith(("| offline", "| live")))
    assert offline[1] == live[1] and offline[3] == live[3]  # the same spans and tokens: the same n
    equal = int(out.split("live memory = offline memory in ")[1].split()[0])
    if not entry.reads_memory_rows:  # no extraction: the same context, the same figures
        assert equal == 12 and offline == live
    else:
        assert equal >= 10


@pytest.mark.parametrize("args, message", [
    (["--variant", "nope"], "unknown training variant 'nope'"),
    (["--extractor", "oracle"], "extractor 'oracle' hands back gold triplets"),
    (["--variant", "window", "--memory-from", "x.parquet"], "variant 'window' has no triplet memory"),
    (["--memory-from", "missing.parquet"], "missing.parquet: no such memory file"),
])
def test_bad_input_is_one_line_and_status_1(story_run, prompt_file, capsys, args, message):
    _, run_dir = story_run
    code, out, err = run_cli(capsys, "generate", "--run", run_dir, "--prompt-file", prompt_file, *args)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err


def test_runs_without_checkpoints_empty_prompts_and_wrong_memory_files_fail_in_one_line(
        story_run, prompt_file, tmp_path, capsys):
    _, run_dir = story_run
    bare = tmp_path / "bare"
    shutil.copytree(run_dir / "tokenizer", bare / "tokenizer")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    wrong = tmp_path / "wrong.parquet"
    shutil.copy(next((run_dir / "tokens").glob("shard_*.parquet")), wrong)  # a tokens shard
    partial = tmp_path / "partial"  # a run that trained one variant
    shutil.copytree(run_dir / "checkpoints" / "window", partial / "checkpoints" / "window")
    cases = [
        (["generate", "--run", bare, "--prompt-file", prompt_file], f"{bare}: no checkpoints"),
        (["generate", "--run", partial, "--prompt-file", prompt_file, "--variant", "raw"],
         "variant 'raw' is not trained here (trained: window)"),
        (["chat", "--run", tmp_path / "nowhere"], "no run folder here"),
        (["generate", "--run", run_dir, "--prompt-file", empty], "the prompt is empty"),
        (["generate", "--run", run_dir, "--prompt-file", tmp_path / "no.txt"], "no such prompt file"),
        (["generate", "--run", run_dir, "--prompt-file", prompt_file, "--memory-from", wrong],
         "not a memory file: no column subject, relation, object"),
        (["evaluate-live", "--run", bare], f"{bare}: no checkpoints"),
    ]
    for args, message in cases:
        code, out, err = run_cli(capsys, *args)
        assert code == 1 and err.count("\n") == 1 and message in err, (args, err)
