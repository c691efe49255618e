"""The report stage's work: report/report.md + plots (evaluation/report.py), published as a
Prefect markdown artifact when it runs inside a flow."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from configs.schema import RunConfig


def report_and_publish(cfg: RunConfig, run_dir: Path,
                       on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    from evaluation.report import build_report
    result = build_report(cfg, run_dir)
    _publish(Path(run_dir) / "report" / "report.md", cfg.name)
    return result


def _publish(report_md: Path, run_name: str) -> None:
    from prefect.context import TaskRunContext
    if TaskRunContext.get() is None or not report_md.is_file():
        return
    from prefect.artifacts import create_markdown_artifact
    key = "report-" + "".join(c if c.isalnum() else "-" for c in run_name.lower())
    create_markdown_artifact(report_md.read_text(encoding="utf-8"), key=key,
                             description=f"Triplet Context Compression report: {run_name}")
