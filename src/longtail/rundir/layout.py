"""What a run directory holds: the names of its files, its marker, and the prefixes of staged and replaced copies."""

from __future__ import annotations

CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
SPLITS = "splits.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
POSTHOC = "posthoc.json"
TRUST = "trust.json"  # evaluation.trust: temperature, conformal and abstention thresholds fitted on validation
LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"
PREDICTIONS = "predictions"
PACES = "paces"  # SPBL: one engine run per pace, paces/<k>/
DATA_META = "data.json"  # what the data looked like to the model (training.loading reads it back)
METADATA_ENCODING = "metadata_encoding.json"  # model.metadata: columns, vocabularies, train means / stds (data.metadata)
RESUMES = "resumes.jsonl"  # training.resume_check: one line per resume
SPBL = "spbl"  # SPBL's final classifier and pools
TENSORBOARD = "tensorboard"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
REPORT_FILES = "report_files"  # the report's figures (PNG), linked from report.md
#: what ``longtail report`` writes (training writes it too, at the end of a run)
REPORT = (REPORT_HTML, REPORT_MD, REPORT_FILES)
TRACKING = "tracking.json"  # tracking.session: the MLflow run this run logs to (resume and export add to it)
CARD = "model_card.md"  # evaluation.card: the model card (`longtail card` and `export` write it; a tracked run writes it at its end)
#: what ``longtail export`` writes by default: model.onnx / model.pt and each one's sidecar JSON
EXPORTED = ("model.onnx", "model.onnx.json", "model.pt", "model.pt.json")


#: written when a run directory is created; ``--overwrite`` only replaces folders that have it
MARKER = ".longtail-run"
STAGING_PREFIX = ".staging-"
REPLACED_PREFIX = ".replaced-"

#: every file a run writes (a temp file of one of these names is a killed write: staging.clean_temp_files)
WRITTEN = (MARKER, CONFIG, ENVIRONMENT, SPLITS, METRICS, RESULTS, POSTHOC, TRUST, LAST, BEST, DATA_META, METADATA_ENCODING, "pace.json", "classifier.skops", REPORT_HTML, REPORT_MD, CARD, TRACKING)
