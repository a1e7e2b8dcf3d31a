"""What a run directory holds: the names of its files, its marker, and the prefixes of staged and replaced copies."""

from __future__ import annotations

CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
SPLITS = "splits.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
POSTHOC = "posthoc.json"
LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"
PREDICTIONS = "predictions"
PACES = "paces"  # SPBL: one engine run per pace, paces/<k>/


#: written when a run directory is created; ``--overwrite`` only replaces folders that have it
MARKER = ".longtail-run"
STAGING_PREFIX = ".staging-"
REPLACED_PREFIX = ".replaced-"

#: every file a run writes (a temp file of one of these names is a killed write: staging.clean_temp_files)
WRITTEN = (MARKER, CONFIG, ENVIRONMENT, SPLITS, METRICS, RESULTS, POSTHOC, LAST, BEST, "data.json", "pace.json", "classifier.skops")
