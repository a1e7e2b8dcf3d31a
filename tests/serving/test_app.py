"""`longtail serve`'s endpoints: the numbers equal `longtail predict`'s, and every bad request is a 4xx JSON error."""

from __future__ import annotations

import csv
import io
import zlib
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import longtail
from longtail import rundir

from .conftest import EXAMPLES

IMAGES = sorted(EXAMPLES.glob("*.png"))[:4]


def _files(*paths: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (p.name, p.read_bytes(), "image/png")) for p in paths]


def test_predict_equals_longtail_predict(client, served_run, tmp_path) -> None:
    out = tmp_path / "preds.csv"
    longtail.predict(served_run, [str(p) for p in IMAGES], out=out, top_k=3)
    with open(out, newline="") as f:
        expected = {Path(r["image"]).name: r for r in csv.DictReader(f)}
    r = client.post("/predict", files=_files(*IMAGES))
    assert r.status_code == 200, r.text
    answers = r.json()["predictions"]
    assert [a["image"] for a in answers] == [p.name for p in IMAGES]
    names = list(client.get("/model").json()["class_names"])
    for a in answers:
        row = expected[a["image"]]
        # predict writes the temperature-calibrated probabilities: the served calibrated ones equal them
        np.testing.assert_allclose([a["calibrated_probabilities"][n] for n in names], [float(row[n]) for n in names], rtol=1e-6, atol=1e-7)
        assert a["label"] == row["label"] and a["probability"] == pytest.approx(float(row["probability"]), abs=1e-7)
        assert [t["label"] for t in a["top_k"]] == [row[f"top_{i}"] for i in (1, 2, 3)]
        assert ";".join(a["prediction_set"]) == row["prediction_set"]
        assert a["abstain"] == (row["abstain"] == "yes")
        assert a["warning"] == row["warning"]
        # the uncalibrated probabilities are the softmax of the same logits at temperature 1: same order, same sum
        p = np.array([a["probabilities"][n] for n in names])
        assert p.sum() == pytest.approx(1.0, abs=1e-5) and int(p.argmax()) == names.index(a["label"])


def test_uncalibrated_probabilities_are_the_temperature_one_softmax(client, served_run) -> None:
    """calibrated = softmax(log(p) / T) for the run's stored temperature T."""
    t = float(rundir.read_json(served_run / rundir.TRUST)["temperature"]["value"])
    a = client.post("/predict", files=_files(IMAGES[0])).json()["predictions"][0]
    names = list(a["probabilities"])
    z = np.log(np.array([a["probabilities"][n] for n in names], dtype=np.float64)) / t
    expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose([a["calibrated_probabilities"][n] for n in names], expected, rtol=1e-5, atol=1e-7)


def test_top_k_query_and_model_info(client, served_run) -> None:
    a = client.post("/predict?top_k=1", files=_files(IMAGES[0])).json()["predictions"][0]
    assert len(a["top_k"]) == 1
    info = client.get("/model").json()
    results = rundir.read_json(served_run / rundir.RESULTS)
    assert info["metrics"]["test"]["balanced_accuracy"] == pytest.approx(results["test"]["balanced_accuracy"])
    assert info["class_names"] == results["class_names"]
    assert info["calibrated"] and info["prediction_sets"] and info["abstention"]
    assert len(info["run_id"]) == 16 and client.get("/health").json() == {"status": "ok"}


def test_explain_returns_a_png_overlay_of_the_image_size(client) -> None:
    pytest.importorskip("pytorch_grad_cam")
    import base64

    a = client.post("/predict?explain=true", files=_files(IMAGES[0])).json()["predictions"][0]
    prefix = "data:image/png;base64,"
    assert a["overlay"].startswith(prefix)
    overlay = Image.open(io.BytesIO(base64.b64decode(a["overlay"][len(prefix):])))
    assert overlay.mode == "RGB" and overlay.size == Image.open(IMAGES[0]).size


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb: only the header is ever read)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()[:400]


@pytest.mark.parametrize(("request_kwargs", "status", "words"), [
    ({"files": [("file", ("notes.txt", b"not an image at all", "text/plain"))]}, 422, ["notes.txt", "cannot be decoded"]),
    ({"files": [("file", ("cut.jpg", _truncated_jpeg(), "image/jpeg"))]}, 422, ["cut.jpg", "cannot be decoded"]),
    ({"files": [("file", ("huge.png", _png_header(30000, 30000), "image/png"))]}, 422, ["huge.png", "30000x30000", "max_image_pixels"]),
    ({"content": b""}, 400, ["empty"]),
    ({"content": b"{}", "headers": {"content-type": "application/json"}}, 415, ["application/json", "multipart/form-data"]),
    ({"files": [("image", ("a.png", b"x", "image/png"))]}, 400, ["no file in the field 'file'", "image"]),
    ({"files": [("file", ("empty.png", b"", "image/png"))]}, 400, ["empty.png", "empty"]),
    ({"files": [("file", ("big.png", b"\0" * 300_000, "image/png"))]}, 413, ["limit of 200,000"]),
])
def test_bad_requests_get_a_4xx_json_error_and_the_server_keeps_serving(client, request_kwargs, status, words) -> None:
    r = client.post("/predict", **request_kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert "\n" not in error
    for word in words:
        assert word in error, (word, error)
    assert client.post("/predict", files=_files(IMAGES[0])).status_code == 200  # still serving


def test_bad_query_value_is_a_400(client) -> None:
    r = client.post("/predict?top_k=abc", files=_files(IMAGES[0]))
    assert r.status_code == 400 and "top_k" in r.json()["error"]


def test_page_is_served_with_its_controls(client) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for element in ('id="file"', 'id="prediction"', 'id="bars"', 'id="overlay"'):
        assert element in r.text


def test_serve_refuses_a_folder_that_is_not_a_run(tmp_path, capsys) -> None:
    from longtail.cli import main

    assert main(["serve", str(tmp_path)]) == 2
    assert "not a longtail run directory" in capsys.readouterr().err
