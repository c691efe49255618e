"""research/bench_engine.py (the engine's benchmark) runs end to end on the engine tests' small real
run and prints its three rows."""
from research.bench_engine import main


def test_the_engine_benchmark_reports_every_configuration(story_run, capsys):
    _, run_dir = story_run
    main(["--run", str(run_dir), "--tokens", "40", "--repeats", "1", "--changes", "2"])
    out = capsys.readouterr().out
    for row in ("| no sidecar |", "| sidecar |", "| uncached |"):
        assert row in out
    assert "a rebuild = " in out and "decode steps" in out
