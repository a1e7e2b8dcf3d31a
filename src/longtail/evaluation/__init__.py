"""Evaluation from stored predictions: scoring, post-hoc corrections, decision tables, the report, ISIC submissions, prediction rows, the error gallery."""
