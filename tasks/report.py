"""Report stage task: report/report.md + plots, published as a Prefect markdown artifact."""
import logging
from pathlib import Path

from tasks.stage import stage_task

log = logging.getLogger(__name__)


def _report(cfg, run_dir, on_progress):
    from warehouse.report import build_report
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


report = stage_task("report", _report)
