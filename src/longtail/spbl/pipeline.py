"""SPBL's self-paced procedure: paces of CNN training (through the engine) and a weighted feature
classifier refitted on every pace's feature block.

Pace 0 trains the CNN on the initial set and fits the classifier on its features. Every later
pace ``s`` (ratio ``r = add_ratios[s - 1]``) scores the pool with the current classifier, selects
the easiest ``r`` of each class, measures class complexity, draws the cost vector, rebuilds the
curriculum at feature level, fine-tunes the *same* CNN on initial set + selection, and refits
the classifier on all blocks so far. The last pace's classifier (optionally calibrated on
validation) is the model's head.

Layout inside the run directory (each pace is an ordinary engine run in its own folder)::

    paces/<k>/checkpoints/{last,best}.pt   the CNN of pace k (best = chosen on validation)
    paces/<k>/metrics.jsonl                 its epochs
    paces/<k>/block.npz                     features, labels and stored weights of its block; pool scores
    paces/<k>/classifier.skops              the classifier fitted in pace k
    paces/<k>/pace.json                     the pace's record, written last: its presence = pace finished
    spbl/classifier.skops                   the final classifier (what eval and predict use)
    checkpoints/best.pt                     the last pace's best CNN

A resume continues after the last pace with a ``pace.json``; a pace interrupted mid-way resumes
from its own ``last.pt`` like any run, so the final predictions equal an uninterrupted run's.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import rundir
from ..catalog.check import load_config
from ..core.config import to_plain
from ..core.errors import LongtailError
from ..core.schema import Config
from ..losses import spbl_cost_vector
from ..rundir.clock import RunClock
from . import classifier as fc
from .curriculum import class_complexity, initial_split, reconstruction_deltas, resample_block, select_per_class, stored_weight_factor

log = logging.getLogger("longtail")

PACE_RECORD = "pace.json"
BLOCK = "block.npz"
PACE_CLASSIFIER = "classifier.skops"
FINAL_CLASSIFIER = "spbl/classifier.skops"
SELECTION_NOTE = (
    "every pace's CNN epoch is chosen on the validation split (the original chose it on its test list); "
    "the test split is evaluated once, with the last pace's classifier"
)


@dataclass
class Block:
    """One pace's rows of the classifier's training set."""

    features: np.ndarray
    labels: np.ndarray
    stored_weights: np.ndarray  # the weights later paces fit this block with
    sources: np.ndarray  # row of the training split it copies, -1 for a SMOTE row


@dataclass
class FeatureRunner:
    """What feature extraction needs: the model, the evaluation transforms, the device."""

    cfg: Config
    model: Any
    eval_pipeline: Any
    device: torch.device

    @classmethod
    def build(cls, cfg: Config, bundle: Any, model: Any, device: torch.device) -> "FeatureRunner":
        from ..data import build_pipeline

        return cls(cfg, model, build_pipeline(cfg.data.eval_transforms, bundle.norm_mean, bundle.norm_std, train=False), device)


@dataclass
class PacePlan:
    """Steps a-d of a pace: the CNN's training set and the plan for the classifier's new block.
    Pace 0 has only ``members`` (the initial set)."""

    members: np.ndarray  # positions in the training split the CNN trains on
    selected: np.ndarray | None = None  # the pool images selected this pace
    selected_counts: np.ndarray | None = None
    complexity_raw: np.ndarray | None = None
    complexity: np.ndarray | None = None
    cost: np.ndarray | None = None
    target: np.ndarray | None = None
    delta: np.ndarray | None = None

    def record(self) -> dict[str, Any]:
        """The plan's numbers for the pace's line in metrics.jsonl."""
        if self.selected_counts is None:
            return {}
        assert self.complexity_raw is not None and self.cost is not None
        return {
            "selected_counts": self.selected_counts,
            "complexity_raw": self.complexity_raw.round(4),
            "complexity": self.complexity,
            "cost": self.cost.round(6),
            "target_counts": self.target,
            "delta": self.delta,
        }


@dataclass
class PaceResult:
    blocks: list[Block]
    pool_scores: np.ndarray
    classifier: Any


def pace_dir(run_dir: Path, pace: int) -> Path:
    return run_dir / rundir.PACES / str(pace)


def pace_ratios(cfg: Config) -> list[float]:
    """The pool ratio of every pace: 0 for the first (initial set only), then ``add_ratios``."""
    assert cfg.spbl is not None
    return [0.0, *cfg.spbl.add_ratios]


def finished_paces(run_dir: Path, num_paces: int) -> int:
    """How many paces, counted from the first, have their record written."""
    done = 0
    while done < num_paces and (pace_dir(run_dir, done) / PACE_RECORD).is_file():
        done += 1
    return done


def cost_seed(seed: int, pace: int) -> int:
    """The seed of pace ``pace``'s cost vector and resampling draws (independent of torch's RNG)."""
    return seed * 1000 + pace


def pace_config(cfg: Config, pace: int, complexity: np.ndarray | None) -> Config:
    """The engine config of one pace's CNN training: its own seed, the fine-tuning backbone lr
    after the first pace, and (``spbl.cnn_class_weights``) the pace's cost vector as CE weights."""
    spbl = cfg.spbl
    assert spbl is not None
    raw = to_plain(cfg)
    raw["spbl"] = None
    raw["seed"] = cost_seed(cfg.seed, pace)
    if pace > 0 and spbl.finetune_lr_mult is not None:
        for section in [raw["optimizer"], *(s["optimizer"] for s in raw["stages"] if s.get("optimizer"))]:
            section["lr_mult"] = {**section.get("lr_mult", {}), "backbone": spbl.finetune_lr_mult}
    if spbl.cnn_class_weights and complexity is not None:
        raw["class_weights"] = {"name": "spbl_cost", "complexity": [float(h) for h in complexity], "seed": cost_seed(cfg.seed, pace), "max_value": spbl.max_cost}
    return load_config(raw=raw)


# ------------------------------------------------------------------------------------ the loop
def run(cfg: Config, run_dir: Path, bundle: Any, device: torch.device, resume: bool, stop_after: int | None, clock: RunClock) -> tuple[FeatureRunner, bool]:
    """Run (or continue) every pace. Returns (the final model's feature runner, finished).

    ``clock`` counts the run's wall time: a resume carries it on from the last finished pace's record
    (or from the interrupted pace's checkpoint, which the engine reads)."""
    from ..engine.device import seed_everything
    from ..models import build_model

    spbl = cfg.spbl
    assert spbl is not None
    ratios = pace_ratios(cfg)
    num_classes = bundle.num_classes
    targets = np.asarray(bundle.train.targets)
    initial, pool = initial_split(targets, spbl.train_ratio, num_classes, np.random.default_rng(cfg.seed))
    rundir.write_json(run_dir / "spbl" / "pool.json", {"initial": initial, "pool": pool})
    model = build_model(cfg.model, num_classes, bundle.channels, bundle.train_counts).to(device)
    done = finished_paces(run_dir, len(ratios)) if resume else 0
    state = load_finished(run_dir, done, model, cfg, bundle, device) if done else None
    if done:
        clock.carry(rundir.read_json(pace_dir(run_dir, done - 1) / PACE_RECORD).get("elapsed_seconds", 0.0))
    epochs_per_pace = sum(s.epochs for s in cfg.resolved_stages())
    runner = FeatureRunner.build(cfg, bundle, model, device)
    for pace in range(done, len(ratios)):
        budget = None if stop_after is None else stop_after - pace * epochs_per_pace
        if budget is not None and budget <= 0:
            return runner, False
        folder = pace_dir(run_dir, pace)
        plan = plan_pace(cfg, pace, targets, initial, pool, state)
        resume_state = _pace_checkpoint(folder, cfg, bundle, device) if resume else None
        if resume_state is None:
            if folder.exists():
                shutil.rmtree(folder)  # a pace that never reached its first checkpoint starts over
            seed_everything(cost_seed(cfg.seed, pace), cfg.train.deterministic)
        trainer, finished = train_cnn(pace_config(cfg, pace, plan.complexity), folder, bundle, model, device, plan.members, resume_state, budget, clock)
        if not finished:
            return runner, False
        state = finish_pace(cfg, run_dir, pace, bundle, runner, trainer.progress.best_epoch, plan, state, pool, clock)
    return runner, True


def plan_pace(cfg: Config, pace: int, targets: np.ndarray, initial: np.ndarray, pool: np.ndarray, state: PaceResult | None) -> PacePlan:
    """Steps a-d of a pace: what the CNN trains on, and how the classifier's block is rebuilt."""
    spbl = cfg.spbl
    assert spbl is not None
    if pace == 0:
        return PacePlan(members=initial)
    assert state is not None
    ratio = pace_ratios(cfg)[pace]
    pool_targets = targets[pool]
    selected, counts = select_per_class(pool_targets, state.pool_scores, ratio)
    raw_h, h = class_complexity(pool_targets, state.pool_scores, selected)
    cost = spbl_cost_vector(h, seed=cost_seed(cfg.seed, pace), max_value=spbl.max_cost)
    target, delta = reconstruction_deltas(counts, h, spbl.delta_cap, spbl.shrink_factor)
    return PacePlan(np.sort(np.concatenate([initial, pool[selected]])), pool[selected], counts, raw_h, h, cost, target, delta)


def train_cnn(pace_cfg: Config, folder: Path, bundle: Any, model: Any, device: torch.device, members: np.ndarray, resume_state: dict[str, Any] | None, budget: int | None, clock: RunClock) -> tuple[Any, bool]:
    """One pace's CNN training through the engine, on the pace's training set; the best (validation)
    epoch's weights are loaded back into ``model``."""
    from ..engine.trainer import Trainer

    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    pace_bundle = replace(bundle, train=bundle.train.subset(members))
    trainer = Trainer(pace_cfg, folder, pace_bundle, model, device, clock=clock)
    if resume_state is not None:
        rundir.truncate_metrics(folder, resume_state["progress"]["global_epoch"])
    trainer.fit(resume_state, stop_after=budget)
    if trainer.progress.global_epoch < sum(s.epochs for s in trainer.stages):
        return trainer, False
    best = _load_state(folder / rundir.BEST, pace_cfg, bundle, device)
    model.load_state_dict(best["model"])
    return trainer, True


def finish_pace(
    cfg: Config, run_dir: Path, pace: int, bundle: Any, runner: FeatureRunner, best_epoch: int,
    plan: PacePlan, state: PaceResult | None, pool: np.ndarray, clock: RunClock,
) -> PaceResult:
    """Steps f-h: features, the rebuilt block, the classifier refit, new pool scores; saved, record last."""
    from ..engine.inference import per_class_accuracy
    from ..metrics import compute, softmax

    spbl = cfg.spbl
    assert spbl is not None
    num_classes = bundle.num_classes
    ratio = pace_ratios(cfg)[pace]
    targets = np.asarray(bundle.train.targets)
    t0 = time.perf_counter()
    train_feats = extract_features(runner, bundle.train)
    val_out = predict(runner, bundle.val)
    feature_seconds = time.perf_counter() - t0
    members = plan.members
    rng = np.random.default_rng(cost_seed(cfg.seed, pace))
    if pace == 0:
        x, y, src = train_feats[members], targets[members], members
        fit_weights = np.ones(len(y))
    else:
        assert plan.delta is not None and plan.cost is not None
        x, y, rows = resample_block(train_feats[members], targets[members], plan.delta, rng, spbl.resample, spbl.smote_k)
        src = np.where(rows >= 0, members[np.maximum(rows, 0)], -1)
        fit_weights = plan.cost[y]
    previous = state.blocks if state is not None else []
    all_x = np.concatenate([*(b.features for b in previous), x])
    all_y = np.concatenate([*(b.labels for b in previous), y])
    all_w = np.concatenate([*(b.stored_weights for b in previous), fit_weights])
    t0 = time.perf_counter()
    clf = fc.fit_classifier(fc.make_classifier(spbl.classifier, spbl.svm_c, spbl.svm_gamma, cfg.seed, spbl.feature_norm), all_x, all_y, all_w)
    fit_seconds = time.perf_counter() - t0
    block = Block(x.astype(np.float32), y, fit_weights * stored_weight_factor(ratio, spbl.train_ratio), src)
    pool_scores = softmax(fc.classifier_logits(clf, train_feats[pool], num_classes))  # SPBL's pool scores
    val_logits = fc.classifier_logits(clf, val_out.features, num_classes)
    val = compute(val_logits, val_out.targets, class_names=bundle.class_names)
    cnn_val = compute(val_out.logits, val_out.targets, class_names=bundle.class_names)
    record: dict[str, Any] = {
        "pace": pace,
        "ratio": ratio,
        "cnn_train_images": int(len(members)),
        "cnn_train_counts": np.bincount(targets[members], minlength=num_classes),
        "cnn_best_epoch": best_epoch,
        "cnn_seconds": round(sum(r.get("seconds", 0.0) for r in rundir.read_jsonl(pace_dir(run_dir, pace) / rundir.METRICS)), 3),
        "feature_seconds": round(feature_seconds, 3),
        "classifier_fit_seconds": round(fit_seconds, 3),
        "classifier_rows": int(len(all_y)),
        "classifier_rows_per_class": np.bincount(all_y, minlength=num_classes),
        "classifier_weight_per_class": np.bincount(all_y, weights=all_w, minlength=num_classes).round(4),
        "val_balanced_accuracy": val["balanced_accuracy"],
        "val_accuracy": val["accuracy"],
        "val_per_class_recall": per_class_accuracy(val_logits, val_out.targets, num_classes).round(4),
        "cnn_val_balanced_accuracy": cnn_val["balanced_accuracy"],
        **plan.record(),
        "elapsed_seconds": round(clock.seconds(), 3),  # the run's wall time so far: a resume carries it on
    }
    folder = pace_dir(run_dir, pace)
    save_block(folder / BLOCK, block, pool_scores, plan.selected)
    fc.save_classifier(clf, folder / PACE_CLASSIFIER)
    _publish_pace_log(run_dir, pace, record)
    rundir.write_json(folder / PACE_RECORD, record)  # last: from here on the pace counts as finished
    log.info("spbl pace %d/%d: classifier on %d rows, validation balanced accuracy %.4f (CNN alone %.4f)",
             pace + 1, len(pace_ratios(cfg)), len(all_y), val["balanced_accuracy"], cnn_val["balanced_accuracy"])
    return PaceResult([*previous, block], pool_scores, clf)


def _publish_pace_log(run_dir: Path, pace: int, record: dict[str, Any]) -> None:
    """Rewrite the run's metrics.jsonl: earlier paces' lines, then this pace's epochs (numbered on
    from the previous pace, stage names prefixed with the pace) and its pace record."""
    kept = [r for r in rundir.read_jsonl(run_dir / rundir.METRICS) if r.get("pace", -1) < pace]
    offset = max((r["epoch"] for r in kept if "epoch" in r), default=0)
    lines = []
    for r in rundir.read_jsonl(pace_dir(run_dir, pace) / rundir.METRICS):
        lines.append({**r, "pace": pace, "epoch": offset + r["epoch"], "stage": f"pace{pace}/{r.get('stage')}"})
    lines.append({"kind": "spbl_pace", **record})
    rundir.write_jsonl(run_dir / rundir.METRICS, [*kept, *lines])


def extract_features(runner: FeatureRunner, dataset: Any) -> np.ndarray:
    """Penultimate features of every item, through the evaluation transforms (no augmentation)."""
    out = predict(runner, dataset)
    if out.features is None:
        raise LongtailError("spbl needs the model's features, but this model returned none; use a Classifier backbone")
    return out.features


def predict(runner: FeatureRunner, dataset: Any) -> Any:
    """CNN logits and features of every item of ``dataset`` (its training augmentation switched off)."""
    from ..engine.inference import predict_dataset

    view = dataset.subset(np.arange(len(dataset)))
    view.sample_transform = None
    cfg = runner.cfg
    return predict_dataset(runner.model, view, runner.eval_pipeline, runner.device, cfg.data.eval_batch_size, cfg.train.precision, num_workers=cfg.data.num_workers, channels_last=cfg.train.channels_last)


# --------------------------------------------------------------------------------- persistence
def save_block(path: Path, block: Block, pool_scores: np.ndarray, selected: np.ndarray | None) -> None:
    arrays = {"features": block.features, "labels": block.labels, "stored_weights": block.stored_weights, "sources": block.sources,
              "pool_scores": pool_scores, "selected": np.asarray(selected if selected is not None else [], dtype=np.int64)}
    rundir.atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def load_block(path: Path) -> tuple[Block, np.ndarray]:
    if not path.is_file():
        raise LongtailError(f"SPBL pace data '{path}' is missing; delete that pace's folder and resume to redo it")
    with np.load(path, allow_pickle=False) as z:
        block = Block(z["features"], z["labels"], z["stored_weights"], z["sources"])
        return block, z["pool_scores"]


def load_finished(run_dir: Path, done: int, model: Any, cfg: Config, bundle: Any, device: torch.device) -> PaceResult:
    """The state after ``done`` finished paces: their blocks, the last pool scores and classifier,
    and the last pace's best CNN weights (loaded into ``model``)."""
    blocks, scores_ = [], None
    for pace in range(done):
        block, scores_ = load_block(pace_dir(run_dir, pace) / BLOCK)
        blocks.append(block)
    last = pace_dir(run_dir, done - 1)
    model.load_state_dict(_load_state(last / rundir.BEST, cfg, bundle, device)["model"])
    assert scores_ is not None
    return PaceResult(blocks, scores_, fc.load_classifier(last / PACE_CLASSIFIER))


def _pace_checkpoint(folder: Path, cfg: Config, bundle: Any, device: torch.device) -> dict[str, Any] | None:
    path = folder / rundir.LAST
    return _load_state(path, cfg, bundle, device) if path.is_file() else None


def _load_state(path: Path, cfg: Config, bundle: Any, device: torch.device) -> dict[str, Any]:
    """A pace's checkpoint through the one safe loader (nothing in the file is executed), checked
    against the run's model and classes."""
    from ..rundir.checkpoint import check_for_model, load_checkpoint

    if not path.is_file():
        raise LongtailError(f"no checkpoint '{path}'; the pace has not validated yet (delete the pace's folder and resume to redo it)")
    state = load_checkpoint(path, map_location=device)
    check_for_model(state, path, cfg.model, bundle.num_classes, list(bundle.class_names))
    return state


# ------------------------------------------------------------------------------------ the end
def publish_final(cfg: Config, run_dir: Path, bundle: Any, runner: FeatureRunner) -> dict[str, Any]:
    """The final model: the last pace's CNN as ``checkpoints/best.pt`` and its classifier
    (calibrated on validation when asked) as ``spbl/classifier.skops``. Returns the run record."""
    spbl = cfg.spbl
    assert spbl is not None
    last = len(pace_ratios(cfg)) - 1
    folder = pace_dir(run_dir, last)
    clf = fc.load_classifier(folder / PACE_CLASSIFIER)
    if spbl.calibration != "none":
        val = predict(runner, bundle.val)
        clf = fc.calibrate(clf, spbl.calibration, val.features, val.targets)
    fc.save_classifier(clf, run_dir / FINAL_CLASSIFIER)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    rundir.atomic_write_bytes(run_dir / rundir.BEST, (folder / rundir.BEST).read_bytes())
    records = [rundir.read_json(pace_dir(run_dir, p) / PACE_RECORD) for p in range(last + 1)]
    return {
        "paces": len(records),
        "classifier": spbl.classifier,
        "feature_norm": spbl.feature_norm,
        "calibration": spbl.calibration,
        "scores": "softmax of the classifier's decision values" if spbl.calibration == "none" else f"{spbl.calibration}-calibrated probabilities (fitted on validation)",
        "selection": SELECTION_NOTE,
        "cnn_seconds": round(sum(r["cnn_seconds"] for r in records), 1),
        "classifier_fit_seconds": round(sum(r["classifier_fit_seconds"] for r in records), 1),
        "feature_seconds": round(sum(r["feature_seconds"] for r in records), 1),
    }


def attach_classifier(model: Any, run_dir: Path) -> None:
    """Put a finished SPBL run's final classifier in ``model``'s head slot (eval, predict, report)."""
    from torch import nn

    clf = fc.load_classifier(run_dir / FINAL_CLASSIFIER)
    model.head = fc.FeatureClassifierHead(clf, model.num_classes)
    model.dropout = nn.Identity()
