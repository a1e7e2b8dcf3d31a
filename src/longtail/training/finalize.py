"""The end of a run: the best checkpoint on validation and (once) on test, post-hoc strengths, results.json.

Every training path (the Trainer, SPBL's paces) ends here, so results.json means the same for all.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import rundir
from ..core.errors import LongtailError
from ..core.schema import Config
from ..engine import distributed
from .loading import load_model

log = logging.getLogger("longtail")


def finalize(run_dir: Path, cfg: Config, bundle: Any, device: torch.device, eval_pipeline: Any, record: dict[str, Any], train_seconds: float) -> dict[str, Any]:
    """Evaluate the best checkpoint on validation and (once) on test; choose post-hoc strengths on validation.

    ``record`` holds what training knows (best_epoch, best_val_score, epochs, method extras) and
    goes into results.json as is.
    """
    from ..engine.inference import build_tta, predict_dataset, routing_summary
    from ..evaluation.gallery import save_correct, save_errors
    from ..evaluation.intervals import resampling_groups, run_intervals
    from ..evaluation.scoring import split_metrics

    distributed.barrier()  # rank 0 has written best.pt before any rank reads it
    model = load_model(run_dir, cfg, bundle.num_classes, bundle.channels, bundle.train_counts, device)
    tta = build_tta(cfg)
    counts = np.asarray(bundle.train_counts)
    outputs = {}
    for split in ("val", "test"):
        dataset = getattr(bundle, split)
        if dataset is None:
            continue
        outputs[split] = predict_dataset(model, dataset, eval_pipeline, device, cfg.data.eval_batch_size, cfg.train.precision, tta, cfg.data.num_workers, cfg.train.channels_last)
    posthoc = choose_posthoc(cfg, model, outputs["val"], counts)
    # every split's logits after the post-hoc correction, computed once for the test metrics, the trust layer and the cohorts
    corrected = {s: apply_posthoc_to(model, o, posthoc, counts) if posthoc else o.logits for s, o in outputs.items()}
    units = {s: resampling_groups(cfg.eval.bootstrap, getattr(bundle, s), bundle) for s in outputs}
    if distributed.is_main():
        for split, out in outputs.items():
            rundir.save_predictions(run_dir, split, out.logits, out.targets, out.ids, out.features, units[split], corrected[split] if posthoc else None)
        rundir.write_json(run_dir / rundir.POSTHOC, posthoc)
    results: dict[str, Any] = {
        "name": cfg.name,
        "class_names": list(bundle.class_names),
        **({"class_map": bundle.class_map} if bundle.class_map is not None else {}),
        "train_counts": [int(c) for c in counts],
        "select_metric": cfg.train.select_metric,
        **record,
        "train_seconds": round(train_seconds, 1),
        "test_evaluated_once": True,
        "val": split_metrics(outputs["val"].logits, outputs["val"].targets, counts, bundle.class_names, cfg.eval),
        "posthoc": posthoc,
    }
    if "test" in outputs and (outputs["test"].targets < 0).all():
        # a withheld test set (ISIC): its predictions are saved for a submission, no metrics
        results["test_unlabelled"] = {"images": len(outputs["test"].targets), "predictions": f"{rundir.PREDICTIONS}/test.npz"}
    elif "test" in outputs:
        test = outputs["test"]
        results["test"] = split_metrics(test.logits, test.targets, counts, bundle.class_names, cfg.eval)
        if posthoc:
            results["test_posthoc"] = split_metrics(corrected["test"], test.targets, counts, bundle.class_names, cfg.eval)
    if not distributed.is_main():  # the same results on every rank; rank 0 writes them
        return results
    if "test" in results:
        test, explain = outputs["test"], _gallery_explainer(cfg, model, eval_pipeline, device)
        results["intervals"] = run_intervals(test.logits, test.targets, corrected["test"] if posthoc else None, units["test"], cfg.eval.bootstrap)
        routing = routing_summary(model, bundle.test, eval_pipeline, device, cfg.data.eval_batch_size, cfg.train.precision, cfg.train.channels_last)
        if routing is not None:  # RIDE's router: the experts each test image used and what that would cost
            results["routing"] = routing
        save_errors(run_dir / rundir.PREDICTIONS, bundle.test, corrected["test"], test.targets, test.ids, explain=explain)
        if cfg.eval.gallery_correct:
            save_correct(run_dir / rundir.PREDICTIONS, bundle.test, corrected["test"], test.targets, test.ids, cfg.eval.gallery_correct, cfg.seed, explain)
    results["trust"] = _trust(run_dir, cfg, bundle, outputs, corrected)
    results.update(_cohorts(cfg, bundle, outputs, corrected, counts))
    try:
        results["decision"] = _decision(cfg, bundle, outputs, model, posthoc, counts)
    except LongtailError as e:  # e.g. a validation split without a positive image: the run itself is fine
        log.warning("the decision tables (operating points, target prior) were skipped: %s", e)
        results["decision"] = {"note": str(e)}
    rundir.write_json(run_dir / rundir.RESULTS, results)
    try:
        from ..evaluation.report import write_report

        write_report(run_dir)
    except Exception as e:  # a report failure must never lose a finished run
        log.warning("the run finished but its report could not be written (%s); retry with `longtail report %s`", e, run_dir)
    return results


def _gallery_explainer(cfg: Config, model: Any, eval_pipeline: Any, device: torch.device) -> Any:
    """Grad-CAM for the report's gallery, or None (with the reason logged) when it is off or the model cannot be explained."""
    if not cfg.eval.gallery_cams:
        return None
    from ..evaluation.explain import Explainer

    try:
        return Explainer(model, cfg.eval.cam_layer, eval_pipeline, device)
    except LongtailError as e:  # an SVM head, clips, no grad-cam package: the gallery shows the images alone
        log.info("the report's gallery shows no Grad-CAM maps: %s", e)
        return None


def _trust(run_dir: Path, cfg: Config, bundle: Any, outputs: dict[str, Any], corrected: dict[str, np.ndarray]) -> dict[str, Any]:
    """Fit the trust layer on validation (after the post-hoc correction), store it, and read it on each labelled split."""
    from ..evaluation import trust

    if cfg.eval.unk_class != "none":
        return {"note": "eval.unk_class scores sigmoids with an UNK column; calibration, prediction sets and abstention are fitted on softmax scores"}
    names = list(bundle.class_names)
    try:
        fitted = trust.fit(corrected["val"], outputs["val"].targets, names, cfg.posthoc.temperature, cfg.eval)
    except LongtailError as e:  # e.g. a validation split with one class: the run itself is fine
        log.warning("the trust layer (temperature, prediction sets, abstention) was skipped: %s", e)
        return {"note": str(e)}
    rundir.write_json(run_dir / rundir.TRUST, fitted)
    return {s: trust.summarise(corrected[s], o.targets, fitted, names) for s, o in outputs.items() if (o.targets >= 0).any()}


def _cohorts(cfg: Config, bundle: Any, outputs: dict[str, Any], corrected: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, Any]:
    """results.json's ``subgroups`` and ``cases`` blocks (eval.subgroups, eval.aggregate_by) on test (validation without a labelled test)."""
    from ..evaluation import cohorts

    if not (cfg.eval.subgroups or cfg.eval.aggregate_by):
        return {}
    wanted = [column for key, column in cohorts.needed_columns(cfg.eval) if key != "eval.bootstrap.groups"]
    split = "test" if "test" in outputs and (outputs["test"].targets >= 0).any() else "val"
    out = outputs[split]
    logits = corrected[split]
    columns, names = bundle.columns(out.ids, wanted), list(bundle.class_names)
    blocks: dict[str, Any] = {}
    try:
        if cfg.eval.subgroups:
            blocks["subgroups"] = {"split": split, "tables": cohorts.subgroup_tables(logits, out.targets, columns, names, cfg.eval, split)}
        if cfg.eval.aggregate_by:
            blocks["cases"] = {"split": split, **cohorts.case_metrics(logits, out.targets, columns[cfg.eval.aggregate_by], counts, names, cfg.eval)}
    except LongtailError as e:  # e.g. a subgroup column with one value on test: the run itself is fine
        log.warning("the subgroup / case tables were skipped: %s", e)
        return {"subgroups": {"note": str(e)}}
    return blocks


def _decision(cfg: Config, bundle: Any, outputs: dict[str, Any], model: Any, posthoc: dict[str, Any], counts: np.ndarray) -> dict[str, Any]:
    """results.json's ``decision`` block: AUC/AP per class, operating points, metrics under eval.target_prior."""
    from ..evaluation.decision import summarise

    val, test = outputs["val"], outputs.get("test")
    adjusted, label = None, None
    if posthoc and cfg.eval.target_prior is not None and test is not None:
        adjusted = apply_posthoc_to(model, test, posthoc, counts)
        toward = posthoc.get("logit_adjust", {}).get("target_prior") is not None
        label = "target prior, logit-adjusted toward it" if toward else "target prior, after the post-hoc correction"
    return summarise(val.logits, val.targets, test.logits if test is not None else None, test.targets if test is not None else None,
                     bundle.class_names, cfg.eval.positive, cfg.eval.target_prior, adjusted, label)


def check_eval_classes(cfg: Config, class_names: list[str]) -> None:
    """eval.positive names classes and eval.target_prior has one frequency per class: checked before training."""
    from ..evaluation.decision import check_target_prior, positive_indices

    positive_indices(cfg.eval.positive, class_names)
    check_target_prior(cfg.eval.target_prior, class_names)


def head_params(model: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The linear head's weight and bias as arrays (None where the model has none): what tau-norm rescales."""
    head = getattr(model, "head", None)
    weight = getattr(head, "weight", None)
    bias = getattr(head, "bias", None)
    w = weight.detach().float().cpu().numpy() if isinstance(weight, torch.Tensor) else None
    b = bias.detach().float().cpu().numpy() if isinstance(bias, torch.Tensor) else None
    return w, b


def choose_posthoc(cfg: Config, model: Any, val: Any, counts: np.ndarray) -> dict[str, Any]:
    """Pick logit-adjustment / tau-norm strengths on the validation split only."""
    from ..evaluation.posthoc import fit_posthoc

    if not (cfg.posthoc.tau_norm or cfg.posthoc.logit_adjust):
        return {}
    w, b = head_params(model)
    return fit_posthoc(
        val.logits, val.targets, counts,
        logit_adjustment=cfg.posthoc.logit_adjust, tau_norm=cfg.posthoc.tau_norm,
        grid=cfg.posthoc.grid, metric=cfg.posthoc.metric,
        val_features=val.features, head_weight=w, head_bias=b,
        target_prior=cfg.eval.target_prior if cfg.posthoc.target_prior else None,
        tau_norm_bias=cfg.posthoc.tau_norm_bias,
        source_prior=cfg.posthoc.logit_adjust_from,
    )


def apply_posthoc_to(model: Any, out: Any, posthoc: dict[str, Any], counts: np.ndarray) -> np.ndarray:
    """``out``'s logits with the stored post-hoc correction applied."""
    from ..evaluation.posthoc import apply_posthoc

    w, b = head_params(model)
    return apply_posthoc(out.logits, out.features, posthoc, w, b, counts)
