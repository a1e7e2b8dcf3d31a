"""The "Configuration" section: what ran (from config.yaml) and how the model was selected (results.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .... import metrics as M
from ..run import Run
from ..section import Section


def config_sections(run: Run) -> list[Section]:
    """A key/value table of the resolved config and the model-selection facts; none when both are missing."""
    cfg = config_rows(run.config, run.posthoc) + result_rows(run.results)
    if not cfg:
        return []
    return [Section("Configuration", tables=[(["key", "value"], [list(r) for r in cfg])], text_tables=True)]


def pretrained_label(model: dict[str, Any]) -> str:
    """Where the starting weights came from: a packaged name, 'hub', 'file:<name>' or 'none'."""
    if model.get("weights"):
        return f"file:{Path(str(model['weights'])).name}"
    value = model.get("pretrained", False)
    if isinstance(value, str):
        return value
    return "hub" if value else "none"


def _arch(model: dict[str, Any]) -> str:
    return f":{model['arch']}" if model.get("arch") else ""


def config_rows(config: dict[str, Any] | None, posthoc: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, value) lines that say what ran, from the resolved config."""
    if not config:
        return []

    def comp(entry: Any) -> str:
        if not isinstance(entry, dict):
            return str(entry) if entry is not None else "-"
        kwargs = ", ".join(f"{k}={v}" for k, v in entry.items() if k != "name")
        if "name" not in entry:
            return kwargs or "-"
        return f"{entry['name']}({kwargs})" if kwargs else str(entry["name"])

    data = config.get("data") or {}
    model = config.get("model") or {}
    train = config.get("train") or {}
    optim = config.get("optimizer") or {}
    sched = config.get("schedule") or {}
    rows = [
        ("name", str(config.get("name", "-"))),
        ("seed", str(config.get("seed", "-"))),
        ("data", comp(data.get("source"))),
        ("long tail", comp(data.get("long_tail")) if data.get("long_tail") else "as given"),
        ("image size", str(data.get("image_size") or "as stored")),
        ("normalize", comp(data.get("normalize", "-"))),
        ("model", f"{model.get('name', '-')}{_arch(model)} head={model.get('head', '-')} pretrained={pretrained_label(model)}"),
        ("method", comp(config.get("method"))),
    ]
    stages = config.get("stages") or []
    if stages:
        for i, s in enumerate(stages):
            parts = [f"{s.get('epochs')} epochs", f"loss {comp(s.get('loss') or config.get('loss'))}", f"sampler {comp(s.get('sampler') or config.get('sampler'))}"]
            if s.get("class_weights") or config.get("class_weights"):
                parts.append(f"weights {comp(s.get('class_weights') or config.get('class_weights'))}")
            if s.get("freeze_backbone"):
                parts.append("backbone frozen")
            if s.get("train_norm"):  # MiSLAS's shift learning on BatchNorm
                parts.append("BatchNorm statistics updated" if s["train_norm"] == "stats" else "BatchNorm statistics and affine trained")
            rows.append((f"stage {i + 1} {s.get('name') or ''}".strip(), ", ".join(parts)))
    else:
        rows += [
            ("epochs", str(train.get("epochs", "-"))),
            ("loss", comp(config.get("loss"))),
            ("class weights", comp(config.get("class_weights"))),
            ("sampler", comp(config.get("sampler"))),
        ]
    rows += [
        ("optimizer", f"{optim.get('name', '-')} lr={optim.get('lr', '-')} wd={optim.get('weight_decay', '-')}"),
        ("schedule", f"{sched.get('name', '-')} warmup={sched.get('warmup_epochs', 0)}"),
        ("selection metric", str(train.get("select_metric", "-"))),
    ]
    metric = (config.get("posthoc") or {}).get("metric", "balanced_accuracy")
    for key, entry in posthoc.items():
        if isinstance(entry, dict) and "tau" in entry:
            toward = " toward eval.target_prior" if entry.get("target_prior") is not None else ""
            rows.append((f"post-hoc {key}", f"tau={entry['tau']}{toward} (chosen on validation by {entry.get('metric', metric)}{_val_score(entry)})"))
    return rows


def _val_score(entry: dict[str, Any]) -> str:
    """', 0.6123' from either posthoc.json layout ({val_score} or {scores: {tau: score}}), else ''."""
    score = entry.get("val_score")
    scores = entry.get("scores")
    if score is None and isinstance(scores, dict):
        score = scores.get(entry["tau"], scores.get(str(entry["tau"])))
    return f", {M.fmt(score)}" if isinstance(score, (int, float)) else ""


def result_rows(results: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Model-selection facts from results.json (best epoch, selection metric, training time)."""
    r = results or {}
    rows = []
    if r.get("best_epoch") is not None:
        rows.append(("best checkpoint", f"epoch {r['best_epoch']} of {r.get('epochs', '?')} by validation {r.get('select_metric', '?')} ({M.fmt(r.get('best_val_score'))})"))
    if "stopped_epoch" in r:  # train.early_stopping was set
        stopped = r["stopped_epoch"]
        rows.append(("early stopping", f"stopped after epoch {stopped}" if stopped is not None else "not triggered (the whole budget ran)"))
    if r.get("class_map"):
        rows.append(("classes (data.classes)", "; ".join(f"{new} = {' + '.join(old)}" for new, old in r["class_map"].items())))
    if r.get("train_seconds") is not None:
        rows.append(("training time", f"{float(r['train_seconds']):.1f} s"))
    return rows
