"""The run directory: everything needed to reproduce, resume and evaluate a run lives in it.

The package's face gathers the names callers use (``rundir.CONFIG``, ``rundir.write_json``,
``rundir.RunLock``, ...); each lives in the module of its job. ``checkpoint`` (torch) and ``clock``
are imported by name where needed.
"""

from .files import (
    append_jsonl,
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    check_inside,
    damaged,
    load_predictions,
    read_json,
    read_jsonl,
    save_predictions,
    truncate_metrics,
    write_csv,
    write_error,
    write_json,
    write_jsonl,
)
from .layout import BEST, CARD, CONFIG, DATA_META, ENVIRONMENT, LAST, MARKER, METADATA_ENCODING, METRICS, PACES, POSTHOC, PREDICTIONS, REPORT_FILES, REPORT_HTML, REPORT_MD, RESULTS, SPLITS, TRACKING, TRUST
from .lock import RunLock
from .outputs import check_output, check_output_folder
from .provenance import environment, git_revision
from .staging import check_new, clean_temp_files, commit, create, discard, is_run, next_free, recover, resumable, staging_dir, taken

__all__ = [
    "BEST", "CARD", "CONFIG", "DATA_META", "ENVIRONMENT", "LAST", "MARKER", "METADATA_ENCODING", "METRICS", "PACES", "POSTHOC", "PREDICTIONS", "REPORT_FILES", "REPORT_HTML",
    "REPORT_MD", "RESULTS", "SPLITS", "TRACKING", "TRUST",
    "RunLock", "append_jsonl", "atomic_torch_save", "atomic_write", "atomic_write_bytes", "check_inside", "check_new", "check_output",
    "check_output_folder", "clean_temp_files", "commit", "create", "damaged", "discard", "environment", "git_revision", "is_run",
    "load_predictions", "next_free", "read_json", "read_jsonl", "recover", "resumable", "save_predictions", "staging_dir", "taken",
    "truncate_metrics", "write_csv", "write_error", "write_json", "write_jsonl",
]
