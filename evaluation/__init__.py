"""What a run measured: the evaluate stage, the metrics table's rows, extraction quality, the report.

    evaluation/stage.py               the evaluate stage (every variant x ablation -> metrics)
    evaluation/metrics.py             what a metrics row is; add a metric here
    evaluation/intervals.py           95% intervals: Wilson, document bootstrap
    evaluation/extraction_quality.py  extractors against the oracle; the memory gap
    evaluation/report.py              report/report.md and its plots (markdown and plots only)
"""
