"""The model card of a run: Markdown with the Hugging Face header (``longtail card``, and ``longtail export`` beside the model).

A model leaves its run directory when it is exported or shared; the card travels with it and says
what it is for, what data it saw (class counts per split, how the split was made and grouped), how it
did on test (with the bootstrap intervals where the run has them), per class, calibrated or not, per
subgroup, where it is weak, under which licence its data may be used, and which exact files made it.

Everything is read back from the run directory (``config.yaml``, ``data.json``, ``splits.json``,
``results.json``, ``posthoc.json``, ``trust.json``, ``environment.json``, ``checkpoints/best.pt`` for
its sha256), through the report's reader and tables, so every number in the card is one a file holds
and the card says what the report says. A part the run lacks (intervals, calibration, subgroups...) is
left out, not shown empty. Importing this module loads no torch.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .. import metrics as M
from ..core.errors import LongtailError
from .report.run import Run, load_run, split_label
from .report.section import Section, Table
from .report.sections.cohorts import case_section
from .report.sections.config import config_rows, result_rows
from .report.sections.trust import calibration_section, conformal_section
from .report.tables import md_table, summary_columns, summary_table


def _version() -> str:
    """The installed longtail's version (package metadata: ``import longtail`` would reach the package face, above this layer)."""
    from importlib import metadata

    try:
        return metadata.version("longtail")
    except metadata.PackageNotFoundError:
        return "unknown"


__version__ = _version()
HELP = "write a run's model card (Markdown with the Hugging Face header)"

#: the summary metrics of the header's model-index (each with its results.json key)
INDEX_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "gmean", "mauc", "ece")
#: a class with fewer validation images than this gets a limitation line: one image moves its recall by over 3 points,
#: and the post-hoc strength, temperature and thresholds are chosen on those images
SMALL_VALIDATION = 30
#: the metadata column a named source groups its images by (data/sources: ham10000 lesion_id, egtea the clip's video);
#: a csv source names its own (data.source.group_column); the other sources have no groups
SOURCE_GROUPS = {"ham10000": "lesion_id", "egtea": "video"}
#: config.yaml rows of the report's configuration table that describe the data (the rest describe the training)
DATA_ROWS = ("data", "long tail", "image size", "normalize")

#: licence ids of the Hugging Face header that a data.license text may name in plain words
_CC_IDS = {"cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0",
           "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0"}
_OTHER_IDS = ("apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "gpl-3.0", "odbl", "odc-by", "pddl", "cdla-permissive-2.0", "cdla-sharing-1.0")
_CC = re.compile(r"\bCC[\s-]?(0|BY(?:[\s-](?:NC|SA|ND))*)(?:[\s-]+v?(\d\.\d))?\b", re.IGNORECASE)
NOT_STATED = "not stated: set data.license in the recipe (the data's licence decides how a model trained on it may be used)"


# ------------------------------------------------------------------------------- writing
def write_card(run_dir: str | Path, out: str | Path | None = None, exported: str | Path | None = None, license: str | None = None) -> Path:
    """Write the run's model card to ``out`` (default: RUN_DIR/model_card.md) atomically; return its path.

    ``out`` is checked before any reading: never another file the run owns, never another run's card.
    ``exported`` (an exported model file) adds its name, format and sha256 to the provenance."""
    from .. import rundir  # loads torch: only when writing

    run_dir = Path(run_dir)
    path = check_card_output(run_dir, out if out is not None else run_dir / rundir.CARD)
    text = card_markdown(run_dir, exported, license)
    inside = Path(os.path.realpath(path.parent)) == Path(os.path.realpath(run_dir))
    rundir.atomic_write_bytes(path, text.encode(), run_dir if inside else None)
    return path


def check_card_output(run_dir: Path, path: str | Path) -> Path:
    """``path``, or a one-line error: a file a run owns (rundir.check_output), or the card of another run directory,
    which this run's card would replace."""
    from .. import rundir

    path = rundir.check_output(path, "card", rundir.CARD, label="the model card")
    folder = Path(os.path.realpath(path.parent))
    if path.name == rundir.CARD and rundir.is_run(folder) and folder != Path(os.path.realpath(run_dir)):
        raise LongtailError(f"the model card '{path}' is the card of another run ('{path.parent}'), which this card would replace; "
                            f"write it elsewhere, e.g. '{run_dir / rundir.CARD}'")
    return path


def card_markdown(run_dir: str | Path, exported: str | Path | None = None, license: str | None = None) -> str:
    """The card's text: the YAML front matter (Hugging Face model-card fields), then its sections.

    ``license``: the data's licence for a run whose config does not record ``data.license`` (the config wins)."""
    card = _read(Path(run_dir))
    card.licence_given = license
    sections = [s for build in SECTIONS for s in build(card)]
    if exported is not None:
        sections.append(_exported_section(Path(exported)))
    front = yaml.safe_dump(header(card), sort_keys=False, allow_unicode=True, width=1000)
    lines = ["---", front.rstrip("\n"), "---", "", f"# Model card: {card.run.name}", "", _opening(card), ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        lines += [f"{t}\n" for t in s.text]
        lines += [md_table(h, r) + "\n" for h, r in s.tables]
    return "\n".join(lines).rstrip("\n") + "\n"


# ------------------------------------------------------------------------------- reading
class Card:
    """What the card is made of: the report's reading of the run, plus the files only the card needs."""

    def __init__(self, run: Run, data: dict[str, Any], splits: dict[str, Any] | None, trust: dict[str, Any],
                 environment: dict[str, Any], config_sha256: str, weights_sha256: str) -> None:
        self.run, self.data, self.splits, self.trust, self.environment = run, data, splits, trust, environment
        self.config_sha256, self.weights_sha256 = config_sha256, weights_sha256
        self.licence_given: str | None = None  # `longtail card --license`: for a run whose config does not record data.license

    @property
    def config(self) -> dict[str, Any]:
        return self.run.config or {}

    @property
    def results(self) -> dict[str, Any]:
        return self.run.results or {}

    @property
    def names(self) -> list[str]:
        return [str(n) for n in self.data["class_names"]]

    @property
    def source(self) -> str:
        return str((((self.config.get("data") or {}).get("source")) or {}).get("name", "unknown"))

    @property
    def licence(self) -> str | None:
        value = (self.config.get("data") or {}).get("license") or self.licence_given
        return str(value) if value else None


def _read(root: Path) -> Card:
    """The run's files, or a one-line error when one the card cannot do without is missing."""
    from .. import rundir

    if not (root / rundir.CONFIG).is_file():
        raise LongtailError(f"'{root}' is not a longtail run directory (no {rundir.CONFIG}); pass the folder `longtail train` created")
    run = load_run(root)
    if run.config is None:
        raise rundir.damaged(root / rundir.CONFIG, "is not a YAML mapping")
    if run.results is None:
        raise LongtailError(f"'{root}' has no {rundir.RESULTS}: the run has not finished; continue it with "
                            f"`longtail train --resume {root}`, then write its card")
    best = root / rundir.BEST
    if not best.is_file():
        raise LongtailError(f"'{root}' has no {rundir.BEST}: the card names the weights it describes; continue the run with "
                            f"`longtail train --resume {root}`")
    data = rundir.read_json(root / rundir.DATA_META, keys=("class_names", "train_counts"))
    splits = rundir.read_json(root / rundir.SPLITS) if (root / rundir.SPLITS).is_file() else None
    trust = rundir.read_json(root / rundir.TRUST) if (root / rundir.TRUST).is_file() else {}
    environment = rundir.read_json(root / rundir.ENVIRONMENT) if (root / rundir.ENVIRONMENT).is_file() else {}
    return Card(run, data, splits, trust, environment, sha256_file(root / rundir.CONFIG)[:16], sha256_file(best))


def sha256_file(path: Path) -> str:
    """The file's sha256 (hex), read in blocks: a checkpoint can be large."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _main_split(card: Card) -> str | None:
    """'test' when the run has test metrics, else 'val' (an unlabelled test split), else None."""
    return card.run.main_split


# ------------------------------------------------------------------------------- header
def licence_fields(text: str | None) -> dict[str, str]:
    """The header's ``license`` (a Hugging Face id when ``text`` names one: 'CC BY-NC 4.0' -> cc-by-nc-4.0),
    else ``other`` with a ``license_name`` made from the text ('not-stated' without one)."""
    if text:
        m = _CC.search(text)
        if m:
            parts = re.split(r"[\s-]+", m.group(1).lower())
            kind = "cc0" if parts == ["0"] else "-".join(["cc", *sorted(parts, key=["by", "nc", "nd", "sa"].index)])
            ident = f"{kind}-{m.group(2) or ('1.0' if kind == 'cc0' else '')}"
            if ident in _CC_IDS:
                return {"license": ident}
        words = re.sub(r"[^a-z0-9.]+", "-", text.lower())
        for ident in _OTHER_IDS:
            if re.search(rf"(^|-){re.escape(ident)}($|-)", words) or (ident == "apache-2.0" and re.search(r"apache(-license)?-2\.0", words)):
                return {"license": ident}
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64].strip("-") if text else ""
    return {"license": "other", "license_name": slug or "not-stated"}


def non_commercial(text: str | None) -> bool:
    """Whether the data's licence forbids commercial use (a CC NC licence, or the words 'non-commercial')."""
    if not text:
        return False
    return "-nc" in licence_fields(text)["license"] or bool(re.search(r"non[\s-]?commercial", text, re.IGNORECASE))


def tags(card: Card) -> list[str]:
    """long-tail, imbalanced, then the config's names: the data source, the model, every loss, the method, the post-hoc corrections."""
    cfg = card.config
    model = cfg.get("model") or {}
    losses = [(cfg.get("loss") or {}).get("name"), *((s.get("loss") or {}).get("name") for s in cfg.get("stages") or [])]
    method = (cfg.get("method") or {}).get("name")
    names = ["long-tail", "imbalanced", card.source, model.get("arch") or model.get("name"), *losses,
             method if method != "standard" else None, *card.run.posthoc]
    return list(dict.fromkeys(str(n) for n in names if n))


def header(card: Card) -> dict[str, Any]:
    """The Hugging Face model-card fields: licence, library, pipeline, tags, metrics and the model-index of the test results."""
    out: dict[str, Any] = {**licence_fields(card.licence), "library_name": "longtail", "pipeline_tag": "image-classification", "tags": tags(card)}
    index = _model_index(card)
    if index is not None:
        out["metrics"] = list(dict.fromkeys(m["type"] for m in index[0]["results"][0]["metrics"]))
        out["model-index"] = index
    return out


def _model_index(card: Card) -> list[dict[str, Any]] | None:
    """HF's model-index: one result (image classification on the source's test split) with the headline metrics, plain and post-hoc."""
    split = _main_split(card)
    if split is None:
        return None
    label = dict(M.SUMMARY_METRICS)
    where = split_label(split)
    metrics = []
    for title, values, key in summary_columns(card.run):
        if key == "val" and split == "test":
            continue
        suffix = where if key != "test_posthoc" else f"{where}, post-hoc {' + '.join(card.run.posthoc)}"
        metrics += [{"type": k, "value": float(values[k]), "name": f"{label[k]} ({suffix})"} for k in INDEX_METRICS if values.get(k) is not None]
    if not metrics:
        return None
    dataset = {"name": card.source, "type": card.source, "split": "test" if split == "test" else "validation"}
    return [{"name": card.run.name, "results": [{"task": {"type": "image-classification", "name": "Image classification"},
                                                 "dataset": dataset, "metrics": metrics}]}]


# ------------------------------------------------------------------------------- sections
def _opening(card: Card) -> str:
    model = card.config.get("model") or {}
    name = f"{model.get('name', '?')}{':' + model['arch'] if model.get('arch') else ''}"
    return (f"A {name} image classifier for {len(card.names)} classes of the `{card.source}` data, trained on long-tailed (class-imbalanced) data "
            f"with longtail. Written by longtail {__version__} from the run directory `{card.run.run_dir.name}`; every number here is read "
            "from that run's files (results.json, data.json, splits.json, trust.json, posthoc.json, environment.json).")


def intended_use(card: Card) -> list[Section]:
    text = [(f"Research on long-tailed image classification: comparing methods for class imbalance on `{card.source}` "
            f"({', '.join(card.names)}), and studying this model's errors, calibration and uncertainty."),
            ("Out of scope:\n\n"
            "- Diagnosis, screening or any decision about a person: this is not a medical (diagnostic) device and was not validated "
            "clinically or prospectively.\n"
            "- Images unlike the training data (other devices, sites, populations or preprocessing), and classes outside the list above: "
            "the model assigns every image to one of its classes.\n"
            "- Any use the data's licence does not allow (see Licence of the data).")]
    return [Section("Intended use", text=text)]


def _split_counts(card: Card, split: str) -> list[int] | None:
    """Images per class of a split (its per-class support in results.json), or None when the run did not score it."""
    m = card.run.metrics.get(split) or {}
    rows = m.get("per_class")
    return [int(r["support"]) for r in rows] if rows else None


def training_data(card: Card) -> list[Section]:
    rows = dict(config_rows(card.config, card.run.posthoc))
    facts = [f"Source: {rows.get('data', card.source)}.",
             f"Long tail: {rows.get('long tail', 'as given')}" + ("" if "long tail" not in rows or rows["long tail"] == "as given" else " (made long-tailed by the recipe)") + "."]
    size = card.data.get("image_size")
    facts.append(f"Images: {card.data.get('channels', '?')} channel(s), {'x'.join(str(s) for s in size) if size else 'of their own size'} "
                 f"(height x width), normalised with the {card.data.get('norm_from', 'stored')} mean/std.")
    if card.data.get("class_map"):
        facts.append("Classes merged or kept (data.classes): " + "; ".join(f"{new} = {' + '.join(old)}" for new, old in card.data["class_map"].items()) + ".")
    cap = (card.config.get("data") or {}).get("max_per_class")
    if cap:
        facts.append(f"At most {cap} images per class and split (data.max_per_class).")
    train = [int(c) for c in card.data["train_counts"]]
    val, test = _split_counts(card, "val"), _split_counts(card, "test")
    header = ["class", "train", *(["validation"] if val else []), *(["test"] if test else [])]
    body = [[name, str(train[i]), *([str(val[i])] if val else []), *([str(test[i])] if test else [])] for i, name in enumerate(card.names)]
    body.append(["all", str(sum(train)), *([str(sum(val))] if val else []), *([str(sum(test))] if test else [])])
    if card.results.get("test_unlabelled"):
        facts.append(f"The test split ({card.results['test_unlabelled']['images']} images) is unlabelled (a challenge's withheld set).")
    return [Section("Training data", tables=[(header, body)], text=["\n".join(f"- {f}" for f in facts), "Images per class and split:"])]


def _grouping(card: Card) -> str:
    sp = (card.config.get("data") or {}).get("split") or {}
    source = ((card.config.get("data") or {}).get("source")) or {}
    column = source.get("group_column") or SOURCE_GROUPS.get(card.source)
    if not sp.get("group_by_source_groups", True):
        return "not grouped (data.split.group_by_source_groups: false): images of one group may sit in two splits"
    if not column:
        return "not grouped: the source defines no groups of images"
    groups = ((card.results.get("intervals") or {}).get("settings") or {}).get("groups")
    held = f"; the test split holds {groups} groups" if groups and split_label(_main_split(card) or "val") == "test" else ""
    return f"grouped by `{column}`: all images of one {column} are in the same split{held}"


def split_section(card: Card) -> list[Section]:
    sp = (card.config.get("data") or {}).get("split") or {}
    splits = card.splits or {}
    kind = splits.get("kind") or sp.get("kind", "holdout")
    facts = []
    if kind == "kfold":
        facts.append(f"Kind: k-fold, fold {splits.get('fold', sp.get('fold'))} of {splits.get('folds', sp.get('folds'))} held out "
                     "(data.split.kind kfold), stratified by class.")
    else:
        facts.append("Kind: holdout, one stratified carve (data.split.kind holdout).")
    sizes = {part: len(entry["indices"]) for part in ("train", "val", "test") if isinstance(entry := splits.get(part), dict)}
    origin = {part: entry.get("split") for part in ("train", "val", "test") if isinstance(entry := splits.get(part), dict)}
    if sizes:
        facts.append("Images: " + ", ".join(f"{split_label(p) if p != 'train' else 'train'} {n}" for p, n in sizes.items()) + " (splits.json).")
    if kind != "kfold":
        carved = [f"{split_label(p)} {sp[p]:g}" for p in ("val", "test") if p in origin and origin[p] != p and sp.get(p) is not None]
        own = [split_label(p) for p in ("val", "test") if origin.get(p) == p]
        if carved:
            facts.append("Fractions carved from the data: " + ", ".join(carved) + " (data.split.val, data.split.test).")
        if own:
            facts.append(f"The source's own {' and '.join(own)} split{'s' if len(own) > 1 else ''} used as given.")
    grouping = _grouping(card)
    facts.append(f"Grouping: {grouping}" + (" (the long-tail recipe then samples training images per class)."
                                            if (card.config.get("data") or {}).get("long_tail") and grouping.startswith("grouped") else "."))
    if sp.get("seed") is not None:
        facts.append(f"Split seed: {sp['seed']} (data.split.seed).")
    if sp.get("file"):
        facts.append(f"Indices read from data.split.file `{Path(str(sp['file'])).name}`.")
    facts.append("The test split was scored once, with the checkpoint selected on validation." if card.results.get("test_evaluated_once") else
                 "Validation chose the checkpoint, the post-hoc strengths and every threshold; test did not.")
    return [Section("Split", text=["\n".join(f"- {f}" for f in facts)])]


def training_procedure(card: Card) -> list[Section]:
    rows = [list(r) for r in config_rows(card.config, card.run.posthoc) if r[0] not in ("name", *DATA_ROWS)]
    rows += [list(r) for r in result_rows(card.results) if r[0] != "classes (data.classes)"]
    t = card.trust.get("temperature")
    if t:
        value = t["value"] if isinstance(t["value"], list) else [t["value"]]
        rows.append(["temperature", f"{t['mode']}, T = {', '.join(f'{float(v):.3f}' for v in value)} (fitted on validation by negative log-likelihood)"])
    if card.trust.get("conformal"):
        c = card.trust["conformal"]
        rows.append(["prediction sets", f"{c['mode'].replace('_', '-')} conformal, alpha {c['alpha']:g} (thresholds fitted on validation)"])
    if card.trust.get("selective"):
        s = card.trust["selective"]
        target = f"coverage {s['target_coverage']:g}" if s.get("target_coverage") is not None else f"balanced error {s['target_risk']:g}"
        rows.append(["abstention", f"below {M.fmt(s['threshold'])} on the {s['score'].replace('_', ' ')} (chosen on validation for {target})"])
    text = [("Post-hoc corrections, temperature and thresholds were all chosen on the validation split; `longtail predict` and the exported "
            "model apply them.")] if card.run.posthoc or card.trust else []
    return [Section("Training procedure", tables=[(["key", "value"], rows)], text=text)]


def evaluation(card: Card) -> list[Section]:
    split = _main_split(card)
    if split is None:
        return []
    columns = [c for c in summary_columns(card.run) if not (split == "test" and c[2] == "val")]
    intervals = card.results.get("intervals") or {}
    text = []
    if "test_posthoc" in {c[2] for c in columns}:
        text.append(f"'test, post-hoc' is the model as predict and the export score it: after {' + '.join(card.run.posthoc)} (chosen on validation).")
    if "settings" in intervals:
        note = M.interval_note(intervals["settings"])
        text.append(f"{note[0].upper()}{note[1:]}. They cover the sampling of the test images only, not a retraining with another seed "
                    "or other data.")
    elif split == "test":
        text.append("No confidence intervals were stored (eval.bootstrap.resamples 0, or a run written before them).")
    text.append(M.CONVENTIONS)
    title = "Evaluation on test" if split == "test" else "Evaluation on validation (the run has no labelled test split)"
    sections = [Section(title, tables=[summary_table(columns, intervals)], text=text)]
    if card.results.get("cases"):
        cases = case_section(card.results["cases"])
        sections.append(Section(f"Case-level metrics ({cases.title.split('(', 1)[1]}", tables=cases.tables, text=cases.text))
    return sections


def per_class_recall(card: Card) -> list[Section]:
    split = _main_split(card)
    rows = (card.run.metrics.get(split) or {}).get("per_class") if split else None
    if not rows:
        return []
    posthoc = next((m for _, m, key in summary_columns(card.run) if key == "test_posthoc"), None) if split == "test" else None
    after = (posthoc or {}).get("per_class")
    where = split_label(split)
    header = ["class", "train images", f"{where} images", "recall", *(["recall, post-hoc"] if after else []), "precision"]
    body = [[str(r["name"]), M.fmt(r.get("train_count")), M.fmt(r.get("support")), M.fmt(r.get("recall")),
             *([M.fmt(after[i].get("recall"))] if after else []), M.fmt(r.get("precision"))] for i, r in enumerate(rows)]
    return [Section(f"Per-class recall ({where})", tables=[(header, body)])]


def trust_sections(card: Card) -> list[Section]:
    trust = card.results.get("trust") or {}
    split = "test" if "test" in trust else "val" if "val" in trust else None
    if split is None:
        return []
    block = trust[split]
    out = [calibration_section(block["calibration"], split)] if block.get("calibration") else []
    if block.get("conformal"):
        out.append(conformal_section(block["conformal"], split))
    chosen = (block.get("selective") or {}).get("chosen")
    if chosen:
        target = f"coverage {chosen['target_coverage']:g}" if chosen.get("target_coverage") is not None else f"balanced error {chosen['target_risk']:g}"
        table: Table = (["threshold (validation)", "target", "coverage", "abstained", "balanced accuracy", "accuracy"],
                        [[M.fmt(chosen["threshold"]), target, M.fmt(chosen["coverage"]), M.fmt(chosen["abstained"]),
                          M.fmt(chosen["balanced_accuracy"]), M.fmt(chosen["accuracy"])]])
        out.append(Section(f"Abstention ({split})", tables=[table], text=[
            (f"Below this threshold on the {chosen['score'].replace('_', ' ')}, predict marks an image as an abstention; "
            f"the coverage and the metrics on the images it answers are read on {split}.")]))
    return out


def subgroup_sections(card: Card) -> list[Section]:
    block = card.results.get("subgroups") or {}
    if not block.get("tables"):
        return []
    tables, text = [], []
    for t in block["tables"]:
        positive = bool(t.get("positive"))
        header = [t["column"], "images", "balanced accuracy", "accuracy", *(["sensitivity (positive)"] if positive else [])]
        tables.append((header, [[str(r["group"]), M.fmt(r["n"]), M.fmt(r["balanced_accuracy"]), M.fmt(r["accuracy"]),
                                 *([M.fmt(r["sensitivity"])] if positive else [])] for r in t["groups"]]))
        text.append(f"{t['column']}: worst group {t['worst'] or 'n/a'}, best {t['best'] or 'n/a'}, gap {M.fmt(t['gap'])} "
                    f"(groups with fewer than {t['min_count']} images are n/a).")
    return [Section(f"Subgroups ({block['split']})", tables=tables, text=text)]


def limitations(card: Card) -> list[Section]:
    items = []
    train = [int(c) for c in card.data["train_counts"]]
    split = _main_split(card)
    thresholds = (card.run.metrics.get(split) or {}).get("shot_thresholds") if split else None
    few_below = int(thresholds[1]) if thresholds else M.DEFAULT_SHOT_THRESHOLDS[1]
    few = [f"{n} ({c})" for n, c in zip(card.names, train) if c < few_below]
    if few:
        items.append(f"Few training images (fewer than {few_below}, the few-shot threshold): {', '.join(few)}. Expect these classes "
                     "to be recognised worst and their test numbers to be the least certain.")
    if train and min(train) > 0:
        items.append(f"Class imbalance in training: {max(train)} images of the largest class against {min(train)} of the smallest "
                     f"(ratio {max(train) / min(train):.1f}).")
    val = _split_counts(card, "val")
    small = [f"{n} ({c})" for n, c in zip(card.names, val or []) if c < SMALL_VALIDATION]
    if small:
        items.append(f"Small validation classes (fewer than {SMALL_VALIDATION} images): {', '.join(small)}. The checkpoint, the post-hoc "
                     "strengths and the temperature were chosen on these images, so those choices are noisy for them.")
    test = _split_counts(card, "test")
    absent = [n for n, c in zip(card.names, test or []) if c == 0]
    if absent:
        items.append(f"No test images of {', '.join(absent)}: their test recall is unknown.")
    for t in (card.results.get("subgroups") or {}).get("tables") or []:
        if t.get("gap") is not None:
            items.append(f"Subgroup gap: balanced accuracy differs by {M.fmt(t['gap'])} between the {t['column']} groups "
                         f"{t['worst']} (worst) and {t['best']} (best) on {(card.results.get('subgroups') or {}).get('split', 'test')}.")
    if non_commercial(card.licence):
        items.append("The data's licence is non-commercial: this model, trained on it, is for research and other non-commercial use.")
    elif card.licence is None:
        items.append("The data's licence is not recorded in the run (data.license), so the terms of use of this model are unknown.")
    items.append("Distribution shift: the test images come from the same source and the same preparation as the training images. "
                 "Other devices, sites, populations, image quality or class frequencies can change every number in this card; "
                 "validate (and recalibrate) on data from the place of use before relying on it.")
    return [Section("Limitations", text=["\n".join(f"- {i}" for i in items)])]


def licence_section(card: Card) -> list[Section]:
    text = [card.licence if card.licence else NOT_STATED[0].upper() + NOT_STATED[1:] + "."]
    if card.licence:
        fields = licence_fields(card.licence)
        text.append(f"Header licence id: `{fields['license']}`" + (f" (`{fields['license_name']}`)" if "license_name" in fields else "")
                    + " (from data.license, or `longtail card --license`). The data's terms bind the model trained on it; cite the dataset as its licence asks.")
    return [Section("Licence of the data", text=text)]


def provenance(card: Card) -> list[Section]:
    env = card.environment
    packages = env.get("packages") or {}
    rows = [["config sha256 (config.yaml, first 16 hex)", card.config_sha256],
            ["weights sha256 (checkpoints/best.pt)", card.weights_sha256]]
    if env.get("git_revision"):
        rows.append(["git revision (environment.json)", str(env["git_revision"])])
    if packages.get("longtail"):
        rows.append(["trained with longtail", str(packages["longtail"])])
    rows += [[f"trained with {k}", str(packages[k])] for k in ("torch", "torchvision", "timm") if packages.get(k)]
    if env.get("python"):
        rows.append(["python", str(env["python"])])
    if env.get("seed") is not None:
        rows.append(["seed", str(env["seed"])])
    weights = env.get("weights")
    if isinstance(weights, dict):
        start = ", ".join(f"{k} {weights[k]}" for k in ("source", "file", "sha256") if weights.get(k))
        rows.append(["starting weights", start or "pretrained"])
    rows += [["card written by longtail", __version__], ["card written (UTC)", datetime.now(timezone.utc).strftime("%Y-%m-%d")]]
    return [Section("Provenance", tables=[(["what", "value"], rows)])]


def _exported_section(path: Path) -> Section:
    fmt = "TorchScript" if path.suffix == ".pt" else "ONNX" if path.suffix == ".onnx" else path.suffix.lstrip(".") or "model"
    return Section("Exported model", tables=[(["file", "format", "sha256"], [[path.name, fmt, sha256_file(path)]])],
                   text=[(f"The exported graph folds in the evaluation transforms, normalisation, post-hoc correction and temperature; "
                         f"its preprocessing is described in `{path.name}.json` beside it.")])


#: the card's sections, in order; each returns [] when the run lacks its content
SECTIONS = (intended_use, training_data, split_section, training_procedure, evaluation, per_class_recall, trust_sections, subgroup_sections,
            limitations, licence_section, provenance)


# ------------------------------------------------------------------------------- command
def add_commands(sub: Any) -> None:
    """``longtail card RUN_DIR [--out FILE]``."""
    p = sub.add_parser("card", help=HELP, description="Write a run's model card: Markdown with the Hugging Face model-card header, "
                       "every number read from the run's files.")
    p.add_argument("run_dir", help="a run directory made by `longtail train`")
    p.add_argument("--out", metavar="FILE", help="the card's path (default: RUN_DIR/model_card.md)")
    p.add_argument("--license", metavar="TEXT", help="the data's licence, for a run whose config does not record data.license")
    p.set_defaults(func=_cmd_card)


def _cmd_card(args: argparse.Namespace) -> int:
    print(f"wrote {write_card(args.run_dir, args.out, license=args.license)}")
    return 0


__all__ = ["HELP", "SECTIONS", "add_commands", "card_markdown", "check_card_output", "header", "licence_fields", "non_commercial",
           "sha256_file", "tags", "write_card"]
