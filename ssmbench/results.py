"""A run's results, by concern: the store (``ssmbench.store``: the points in memory and in their file), what they
say (``ssmbench.analysis``: slopes and crossovers; ``ssmbench.verdicts``: verdicts by batch) and how they are
shown (``ssmbench.render``: terminal tables, the Markdown report and its plots). This module gathers their
public names for one import."""

from __future__ import annotations

from .analysis import PAIR_METRICS, best_series, crossovers, loglog_slope, pairs, series
from .render.report import CONTEXT_PLOTS, verdict_tables, write_report
from .render.tables import (
    SPREAD_FLAG,
    calibration_lines,
    left_on_table_lines,
    spread_lines,
    spread_of,
    summary_lines,
    throughput_lines,
)
from .safeio import UnsafeOutput, atomic_write_text
from .store import InvalidPoints, NotAPointsFile, ResultStore, check_results_path, is_points_file
from .verdicts import (
    BATCH_FIGURES,
    THROUGHPUT_FIGURES,
    BatchFigure,
    batch_verdict,
    best_by_batch,
    crossover,
    throughput_by_batch,
    throughput_verdict,
)

__all__ = [
    "BATCH_FIGURES", "CONTEXT_PLOTS", "PAIR_METRICS", "SPREAD_FLAG", "THROUGHPUT_FIGURES", "BatchFigure",
    "InvalidPoints", "NotAPointsFile", "ResultStore", "UnsafeOutput", "atomic_write_text", "batch_verdict",
    "best_by_batch", "best_series", "calibration_lines", "check_results_path", "crossover", "crossovers",
    "is_points_file", "left_on_table_lines", "loglog_slope", "pairs", "series", "spread_lines", "spread_of",
    "summary_lines", "throughput_by_batch", "throughput_lines", "throughput_verdict", "verdict_tables",
    "write_report",
]
