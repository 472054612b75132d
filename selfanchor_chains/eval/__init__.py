"""Benchmark evaluation: resumable runs of the methods (:func:`run_eval`) and the report (:func:`build_report`).

Command line: ``selfanchor eval BENCH[,BENCH...] --methods ... --model NAME`` and ``selfanchor report OUT``.
"""

from __future__ import annotations

from .method_specs import ChainFactory
from .prompted import PROMPTED_METHODS, SteeringRequiredError, make_prompted_chain, render_baseline_prompt
from .report import build_report, format_markdown, load_results, plot_accuracy, plot_tokens, write_report
from .runner import METHOD_NAMES, MethodSpec, make_record, parse_benches, parse_methods, pending_items, run_eval
from .stats import mcnemar_exact, paired_bootstrap, stratified_paired_bootstrap, wilson_interval
from .store import IncompatibleRunError, ResultsFile, ResultsFileError, RunLockedError, read_records

__all__ = [
    "METHOD_NAMES",
    "PROMPTED_METHODS",
    "ChainFactory",
    "IncompatibleRunError",
    "MethodSpec",
    "ResultsFile",
    "ResultsFileError",
    "RunLockedError",
    "SteeringRequiredError",
    "build_report",
    "format_markdown",
    "load_results",
    "make_prompted_chain",
    "make_record",
    "mcnemar_exact",
    "paired_bootstrap",
    "parse_benches",
    "parse_methods",
    "pending_items",
    "plot_accuracy",
    "plot_tokens",
    "read_records",
    "render_baseline_prompt",
    "run_eval",
    "stratified_paired_bootstrap",
    "wilson_interval",
    "write_report",
]
