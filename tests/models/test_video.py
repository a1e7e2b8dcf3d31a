"""Video clips (EGTEA protocol) on a generated fixture: sampling, the source, clip transforms, 3D
backbones, the majority/minority metrics, CDB updates from clip validation, and frame extraction."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from longtail.catalog.check import load_config
from longtail.cli.commands import main as cli_main
from longtail.core.errors import DataError, LongtailError
from longtail.core.registry import DATASETS, MODELS, TRANSFORMS
from longtail.data import build_data, build_pipeline
from longtail.data.clips import ClipDataset, segment_indices

from ..video_fixture import write_egtea_fixture

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "egtea" / "fixture_cpu.yaml"


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return write_egtea_fixture(tmp_path_factory.mktemp("egtea"))


def fixture_overrides(paths: dict[str, Path], out: Path) -> list[str]:
    return [f"data.source.{k}={v}" for k, v in paths.items()] + [f"output_dir={out}"]


def load(paths: dict[str, Path], *extra: str):
    return load_config(RECIPE, fixture_overrides(paths, Path("unused")) + list(extra))


# ------------------------------------------------------------------------------ frame sampling
def test_segment_sampling_is_integer_middle_at_eval_random_within_segment_in_training():
    mid = segment_indices(20, 4, random=False)
    assert mid.dtype == np.int64 and mid.tolist() == [2, 7, 12, 17]
    g = torch.Generator().manual_seed(0)
    draws = np.stack([segment_indices(20, 4, random=True, generator=g) for _ in range(400)])
    assert draws.dtype == np.int64
    for k in range(4):  # segment k is frames 5k..5k+4, each reached
        assert set(draws[:, k].tolist()) == set(range(5 * k, 5 * k + 5))


def test_short_clip_repeats_frames_in_order():
    assert segment_indices(3, 4, random=False).tolist() == [0, 1, 1, 2]
    assert segment_indices(1, 10, random=False).tolist() == [0] * 10
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        idx = segment_indices(3, 10, random=True, generator=g)
        assert idx.min() >= 0 and idx.max() <= 2 and np.all(np.diff(idx) >= 0)


# ------------------------------------------------------------------------------------ source
def test_egtea_source_reads_split_files_and_samples_clips(fixture):
    bundle = build_data(load(fixture).data, seed=0)
    lines = fixture["train"].read_text().split("\n")[0].split()
    assert bundle.class_names == ["verb 1", "verb 2", "verb 3"]
    assert bundle.train_counts.tolist() == [8, 4, 2]
    assert bundle.train.ids[0] == lines[0] and bundle.train.targets[0] == int(lines[2]) - 1  # verb, 1-based
    assert bundle.train.random_frames and not bundle.val.random_frames and not bundle.test.random_frames
    short = min(range(len(bundle.val)), key=lambda i: len(bundle.val.frames[i]))
    assert len(bundle.val.frames[short]) < 4  # the fixture has clips shorter than frames_per_clip
    clip, target = bundle.val[short]
    assert clip.dtype == torch.uint8 and clip.shape == (3, 4, 20, 20)  # C x T x H x W
    torch.manual_seed(0)
    assert torch.equal(bundle.val[short][0], clip)  # evaluation reads segment middles: deterministic
    nouns = build_data(load(fixture, "data.source.label=noun", "data.source.num_classes=5").data, seed=0)
    assert nouns.train.targets[0] == int(lines[3]) - 1


def test_clip_with_a_missing_frame_is_a_one_line_error_or_skipped(fixture, tmp_path):
    import shutil

    root = tmp_path / "frames"
    shutil.copytree(fixture["root"], root)
    name = fixture["train"].read_text().split()[0]
    clip = next(root.rglob(name))
    (clip / "000001.jpg").unlink()
    paths = {**fixture, "root": root}
    with pytest.raises(DataError) as e:
        build_data(load(paths).data, seed=0)
    assert "missing frame 1" in str(e.value) and "on_bad_image=skip" in str(e.value) and "\n" not in str(e.value)
    bundle = build_data(load(paths, "data.on_bad_image=skip").data, seed=0)
    assert len(bundle.train) == 13 and name not in bundle.train.ids
    assert bundle.skipped["train"] == [name]


def test_corrupt_frame_is_a_one_line_error_naming_the_clip_or_skipped(fixture, tmp_path):
    import shutil

    root = tmp_path / "frames"
    shutil.copytree(fixture["root"], root)
    name = fixture["val"].read_text().split()[0]
    clip = next(root.rglob(name))
    for f in clip.iterdir():
        f.write_bytes(b"not a jpeg")
    bundle = build_data(load({**fixture, "root": root}).data, seed=0)
    with pytest.raises(DataError) as e:
        bundle.val.load(bundle.val.ids.index(name))
    assert name in str(e.value) and "cannot be decoded" in str(e.value) and "\n" not in str(e.value)
    skipped = build_data(load({**fixture, "root": root}, "data.on_bad_image=skip").data, seed=0)
    assert name not in skipped.val.ids and skipped.skipped["val"] == [name]


# -------------------------------------------------------------------------------- transforms
def test_clip_transforms_are_identical_across_frames_and_match_the_image_op():
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (6, 3, 24, 28), dtype=torch.uint8).float() / 255
    clips = frame.unsqueeze(2).expand(6, 3, 5, 24, 28).contiguous()  # 6 clips, 5 equal frames each
    entries = [("random_crop", {"size": 20}), ("random_rotation", {"degrees": 10}), ("hflip", {}),
               ("random_resized_crop", {"size": 16, "scale": (0.5, 1.0)}), ("resize", {"size": 12}),
               ("color_jitter", {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4}), ("center_crop", {"size": 10})]
    for name, kw in entries:
        op = TRANSFORMS.create(name, **kw)
        torch.manual_seed(1)
        out = op(clips)
        torch.manual_seed(1)
        ref = op(frame)  # the same draws on the first frames as images
        assert out.shape == (6, 3, 5, *ref.shape[-2:]), name
        for t in range(5):
            assert torch.allclose(out[:, :, t], ref, atol=1e-5), name
    crops = TRANSFORMS.create("random_crop", size=20)(clips)
    assert not all(torch.equal(crops[0], crops[i]) for i in range(1, 6))  # parameters differ per clip


def test_pipeline_normalises_clips_per_channel():
    pipe = build_pipeline([], mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.5], train=False)
    x = torch.full((2, 3, 4, 5, 5), 255, dtype=torch.uint8)
    out = pipe.batch(x)
    assert out.shape == x.shape
    assert torch.allclose(out[:, 2], torch.full_like(out[:, 2], (1 - 0.3) / 0.5))


def test_per_sample_transforms_are_refused_for_clips():
    from longtail.core.errors import ConfigError

    ds = ClipDataset([["a.jpg"]], [0], ["x"], decoder=lambda p: torch.zeros(3, 2, 2, dtype=torch.uint8), frames_per_clip=2)
    with pytest.raises(ConfigError, match="batched transforms"):
        ds.sample_transform = lambda x: x


# ---------------------------------------------------------------------------------- backbones
@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_torchvision_video_backbones(name):
    net = MODELS.create(name, in_channels=3).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 4, 16, 16))
    assert out.shape == (2, net.feature_dim) == (2, 512)


def expected_resnext101_keys() -> dict[str, tuple[int, ...]]:
    """The Kinetics ResNeXt-101 (32 groups, shortcut B) state dict as the paper describes it:
    names and shapes written out independently of longtail's module."""
    keys: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for s in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{s}"] = (c,)

    keys["conv1.weight"] = (64, 3, 7, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((128, 256, 512, 1024), (3, 4, 23, 3)), start=1):
        mid, out = 32 * planes // 32, planes * 2
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            keys[f"{p}.conv1.weight"] = (mid, inplanes if b == 0 else out, 1, 1, 1)
            bn(f"{p}.bn1", mid)
            keys[f"{p}.conv2.weight"] = (mid, mid // 32, 3, 3, 3)
            bn(f"{p}.bn2", mid)
            keys[f"{p}.conv3.weight"] = (out, mid, 1, 1, 1)
            bn(f"{p}.bn3", out)
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (out, inplanes, 1, 1, 1)
                bn(f"{p}.downsample.1", out)
        inplanes = out
    return keys


def test_resnext3d_101_loads_the_kinetics_checkpoint_layout(tmp_path):
    from longtail.core.schema import ModelConfig
    from longtail.models import build_model

    expected = expected_resnext101_keys()
    net = MODELS.create("resnext3d_101", in_channels=3)
    have = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert have == expected
    assert net.feature_dim == 2048
    # the checkpoint: {'arch': 'resnext-101', 'state_dict': {'module.<key>': ...}} with a 400-way fc
    g = torch.Generator().manual_seed(0)
    sd = {f"module.{k}": torch.randn(shape, generator=g) * 0.01 for k, shape in expected.items()}
    sd["module.fc.weight"], sd["module.fc.bias"] = torch.zeros(400, 2048), torch.zeros(400)
    path = tmp_path / "resnext-101-kinetics.pth"
    torch.save({"epoch": 200, "arch": "resnext-101", "state_dict": sd}, path)
    model = build_model(ModelConfig(name="resnext3d_101", weights=str(path)), num_classes=19, in_channels=3)
    assert torch.equal(model.backbone.layer3[22].conv2.weight, sd["module.layer3.22.conv2.weight"])
    assert model.head.weight.shape == (19, 2048)
    del sd["module.layer2.0.downsample.0.weight"]
    torch.save({"state_dict": sd}, path)
    with pytest.raises(LongtailError) as e:
        build_model(ModelConfig(name="resnext3d_101", weights=str(path)), num_classes=19, in_channels=3)
    assert "1 missing keys (layer2.0.downsample.0.weight)" in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------------ metrics
def test_egtea_metrics_match_hand_computed_values():
    from longtail.metrics import compute

    # 4 classes; train counts 700, 650 (majority at threshold 600), 100, 30 (minority)
    y = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    pred = np.array([0, 0, 1, 1, 0, 2, 0, 0])  # class 3 never predicted
    logits = np.eye(4)[pred] * 5.0
    r = compute(logits, y, train_counts=[700, 650, 100, 30], majority_threshold=600)
    # precision: c0 2/5, c1 1/2, c2 1/1, c3 0 (never predicted); recall: 2/3, 1/2, 1/2, 0
    assert r["accuracy"] == pytest.approx(4 / 8)
    assert r["macro_precision"] == pytest.approx((0.4 + 0.5 + 1.0 + 0.0) / 4)
    assert r["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 0.5 + 0.0) / 4)
    mm = r["majority_minority"]
    assert mm["majority"]["precision"] == pytest.approx((0.4 + 0.5) / 2) and mm["majority"]["n_classes"] == 2
    assert mm["majority"]["recall"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert mm["minority"]["precision"] == pytest.approx(0.5) and mm["minority"]["recall"] == pytest.approx(0.25)


# ------------------------------------------------------------------------- the loop on clips
def test_r3d_18_trains_evaluates_and_predicts_through_the_cli(fixture, tmp_path, capsys):
    code = cli_main(["train", "-c", str(_r3d_recipe(tmp_path)), *fixture_overrides(fixture, tmp_path), "train.epochs=1"])
    assert code == 0
    run = tmp_path / "egtea-fixture_r3d"
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 1 and 0 <= results["test"]["accuracy"] <= 1
    mm = results["test"]["majority_minority"]
    assert mm["threshold"] == 5 and mm["majority"]["n_classes"] == 1 and mm["minority"]["n_classes"] == 2
    assert "majority (> 5)" in (run / "report.md").read_text()
    capsys.readouterr()
    assert cli_main(["eval", str(run)]) == 0
    assert "minority (<= 5)" in capsys.readouterr().out
    clips = sorted(p for p in fixture["root"].iterdir())[0]
    assert cli_main(["predict", str(run), str(clips), "--out", str(tmp_path / "p.csv")]) == 0
    rows = (tmp_path / "p.csv").read_text().splitlines()
    top = ",".join(f"top_{i},top_{i}_probability" for i in (1, 2, 3))
    assert rows[0] == f"image,label,probability,{top},warning,verb 1,verb 2,verb 3" and len(rows) - 1 == len(list(clips.iterdir()))


def _r3d_recipe(tmp_path: Path, model: str = "r3d_18") -> Path:
    """The fixture recipe with another model section (its tiny ResNeXt kwargs do not fit other models)."""
    import yaml

    raw = yaml.safe_load(RECIPE.read_text())
    raw["name"] = "egtea-fixture_r3d"
    raw["model"] = {"name": model}
    path = tmp_path / f"{model}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_an_image_backbone_on_clips_is_a_one_line_error(fixture, tmp_path):
    import longtail

    with pytest.raises(LongtailError, match="takes images but data.source gives clips.*r3d_18"):
        longtail.train(str(_r3d_recipe(tmp_path, "small_cnn")), fixture_overrides(fixture, tmp_path))


def test_cdb_weights_update_from_clip_validation_exactly_as_on_images(fixture, tmp_path):
    import longtail
    from longtail.engine.inference import per_class_accuracy, predict_dataset
    from longtail.losses.weighting import cdb_weights
    from longtail.models import build_model

    cfg = load_config(RECIPE, fixture_overrides(fixture, tmp_path) + ["train.epochs=1"])
    result = longtail.train(cfg)
    last = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=False)
    bundle = build_data(cfg.data, seed=cfg.seed)
    model = build_model(cfg.model, bundle.num_classes, bundle.channels, bundle.train_counts)
    model.load_state_dict(last["model"])
    pipe = build_pipeline(cfg.data.eval_transforms, bundle.norm_mean, bundle.norm_std, train=False)
    out = predict_dataset(model, bundle.val, pipe, torch.device("cpu"), batch_size=8)
    acc = per_class_accuracy(out.logits, out.targets, bundle.num_classes)
    assert last["progress"]["last_val_accuracy"] == pytest.approx(acc.tolist())
    expected = cdb_weights(acc, "dynamic", "cifar")
    assert last["loss"]["cdb_weights"].numpy() == pytest.approx(expected, rel=1e-6)
    assert not np.allclose(expected, 1.0)  # validation changed them


# ---------------------------------------------------------------------------- extract-frames
def write_video(path: Path, frames: int, size: tuple[int, int] = (32, 24)) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for t in range(frames):
            img = np.full((size[1], size[0], 3), 20 * t, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_extract_frames_writes_the_clip_layout(tmp_path, capsys):
    name = "OP01-R01-PastaSalad-1002316-1004005-F024051-F024101"
    write_video(tmp_path / "videos" / "OP01-R01-PastaSalad" / f"{name}.mp4", frames=6)
    write_video(tmp_path / "videos" / "other" / "plain.mp4", frames=3)
    out = tmp_path / "frames"
    assert cli_main(["data", "extract-frames", str(tmp_path / "videos"), str(out)]) == 0
    clip = out / "OP01-R01-PastaSalad" / name
    assert sorted(p.name for p in clip.iterdir()) == [f"{i:06d}.jpg" for i in range(6)]
    assert sorted(p.name for p in (out / "plain" / "plain").iterdir()) == [f"{i:06d}.jpg" for i in range(3)]
    first, last = (np.asarray(Image.open(clip / f)) for f in ("000000.jpg", "000005.jpg"))
    assert first.shape == (24, 32, 3) and last.mean() > first.mean() + 50  # the frames, in order
    assert cli_main(["data", "extract-frames", str(tmp_path / "videos"), str(out)]) == 0
    assert "2 clips already there" in capsys.readouterr().out
    split = tmp_path / "train_split.txt"
    split.write_text(f"{name} 12 3 4\nplain 1 1 1\n")
    source = DATASETS.get("egtea")(root=str(out), train=str(split), frames_per_clip=10)
    clips = source.splits["train"]
    assert clips.targets.tolist() == [2, 0] and clips.load(0).shape == (3, 10, 24, 32)  # the source reads them back


def test_extract_frames_without_pyav_names_the_extra(tmp_path, monkeypatch):
    from longtail.data.extract import extract_frames

    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(LongtailError, match=r"pip install 'longtail\[video\]'"):
        extract_frames(tmp_path, tmp_path / "out")


def test_cutmix_pastes_the_same_box_in_every_frame():
    from longtail.augment.mixing import CutMix

    torch.manual_seed(3)
    x = torch.rand(4, 3, 1, 16, 16).expand(4, 3, 5, 16, 16).contiguous()
    mixed, _, _, lam = CutMix(alpha=1.0)(x, torch.arange(4))
    assert mixed.shape == x.shape and float(lam[0]) < 1.0
    for t in range(1, 5):
        assert torch.equal(mixed[:, :, t], mixed[:, :, 0])


def test_kinetics_weights_of_a_video_resnet_load_into_one_channel_clips(tmp_path):
    import torchvision.models as tvm

    from longtail.core.schema import ModelConfig
    from longtail.models import build_model

    source = tvm.get_model("r3d_18", weights=None).state_dict()  # torchvision's own layout, 3 channels
    path = tmp_path / "r3d_18.pth"
    torch.save(source, path)
    model = build_model(ModelConfig(name="r3d_18", weights=str(path)), num_classes=3, in_channels=1)
    stem = model.backbone.net.stem[0].weight
    assert stem.shape[1] == 1 and torch.allclose(stem, source["stem.0.weight"].sum(1, keepdim=True))
    assert torch.equal(model.backbone.net.layer4[1].conv2[0].weight, source["layer4.1.conv2.0.weight"])
