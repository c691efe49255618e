"""python -m engine: generate, chat and evaluate-live on a trained run (see engine/__init__.py).

    python -m engine generate --run runs/tiny --variant triplet --prompt-file story.txt \\
        --max-new-tokens 64 [--temperature 0.8 --top-k 50 --seed 0] [--show-memory] [--explain] \\
        [--memory-from a.parquet runs/tiny:syn-000012] [--save-memory session.parquet]
    python -m engine chat --run runs/tiny [--variant triplet] [--show-memory] [--explain] < turns.txt
    python -m engine evaluate-live --run runs/tiny [--variant triplet] [--max-windows 500]

Without `--run` the run folder is the only or newest one under `runs/` (warehouse/run_folder.py,
printed on stderr). Bad input (a run without checkpoints, a variant not trained, an empty prompt, a memory file that
is not a parquet of triplets, ...) ends as one line on stderr and exit status 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.engine import make_sampler
from engine.evaluate_live import evaluate_live, result_lines
from engine.live_memory import MemoryFileError
from engine.session import SessionError, chat, generate, open_session, save_session_memory
from warehouse.db import WarehouseLocked
from warehouse.run_folder import find_run

RUNS_DIR = "runs"  # where the run folder is looked for without --run


def _session_args(parser: argparse.ArgumentParser, sampling: bool = True) -> None:
    parser.add_argument("--run", type=Path, help="the run folder (default: the only or newest "
                        "run folder under runs/, warehouse/run_folder.py)")
    parser.add_argument("--variant", default="triplet", help="a trained variant (model/variants.py)")
    parser.add_argument("--step", type=int, help="checkpoint step (default: latest)")
    parser.add_argument("--extractor", default="spacy", help="extraction backend of the live memory")
    parser.add_argument("--extraction-budget", type=float, default=0.05, metavar="SECONDS",
                        help="longest wait for the sidecar when the window slides (late memory "
                             "joins at the next update)")
    if not sampling:
        return
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show-memory", action="store_true", help="print the memory slots")
    parser.add_argument("--explain", action="store_true",
                        help="per generated token, the memory slots it attended to most")
    parser.add_argument("--explain-top", type=int, default=3, metavar="K")
    parser.add_argument("--memory-from", nargs="+", default=[], metavar="MEMORY",
                        help="saved memories to merge, oldest first: FILE.parquet or RUN:DOC_ID")
    parser.add_argument("--save-memory", type=Path, metavar="FILE",
                        help="write the session's memory (a parquet of triplets)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="continue a prompt, streaming tokens")
    _session_args(gen)
    gen.add_argument("--prompt-file", required=True, type=Path)
    talk = commands.add_parser("chat", help="a conversation beyond the window (turns from stdin)")
    _session_args(talk)
    live = commands.add_parser("evaluate-live", help="val documents through the engine with live "
                               "extraction, next to offline evaluate")
    _session_args(live, sampling=False)
    live.set_defaults(extraction_budget=None)  # wait: the memory at each window is complete
    live.add_argument("--max-windows", type=int, help="default: the run's evaluate.max_windows")
    args = parser.parse_args(argv)
    args.run = find_run(args.run, None, Path(RUNS_DIR))
    try:
        run(args)
    except (SessionError, MemoryFileError, ValueError, FileNotFoundError, WarehouseLocked) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1)


def run(args: argparse.Namespace) -> None:
    if args.command == "evaluate-live":
        result = evaluate_live(args.run, args.variant, extractor=args.extractor, step=args.step,
                               budget=args.extraction_budget, max_windows=args.max_windows)
        print("\n".join(result_lines(result)))
        return
    prompt = None
    if args.command == "generate":
        if not args.prompt_file.is_file():
            raise SessionError(f"{args.prompt_file}: no such prompt file")
        prompt = args.prompt_file.read_text(encoding="utf-8")
        if not prompt.strip():
            raise SessionError(f"{args.prompt_file}: the prompt is empty")
    session = open_session(args.run, args.variant, step=args.step, extractor=args.extractor,
                           memory_from=args.memory_from, budget=args.extraction_budget,
                           explain=args.explain)
    try:
        sample = make_sampler(args.temperature, args.top_k, args.seed)
        if prompt is not None:
            generate(session, prompt, args.max_new_tokens, sample, sys.stdout, args.show_memory,
                     args.explain_top)
        else:
            chat(session, sys.stdin, args.max_new_tokens, sample, sys.stdout, args.show_memory,
                 args.explain_top)
        if args.save_memory:
            n = save_session_memory(session, args.save_memory)
            print(f"saved {n} triplets to {args.save_memory}", file=sys.stderr)
    finally:
        session.close()


if __name__ == "__main__":
    main()
