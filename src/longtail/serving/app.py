"""`longtail serve RUN_DIR`: a trained run behind a local HTTP server (FastAPI on uvicorn).

FastAPI because the server is a handful of JSON endpoints plus one static page: it validates query
parameters, documents the API at ``/docs`` and runs on uvicorn with worker processes; Gradio would
bring its own front end and a far larger dependency for the same page.

- ``POST /predict``: multipart field ``file`` (one image or several) -> for each: ``probabilities``,
  ``top_k``, ``label``, and where the run has them ``calibrated_probabilities`` (temperature),
  ``prediction_set``, ``abstain``, plus ``warning`` (an input far from the training data) and, with
  ``?explain=true``, a Grad-CAM ``overlay`` (PNG data URL). The numbers are `longtail predict`'s: both
  score through :class:`longtail.inference.predictor.Predictor`.
- ``GET /``: a page to drop an image on; ``GET /health``; ``GET /model``: classes, input size, run id,
  test metrics.

Every refused request is a 4xx JSON ``{"error": "..."}`` and the server keeps serving. Scoring runs in
a worker thread under a lock: one batch at a time per process (``--workers`` adds processes).
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request, Query) at
# definition time, inside create_app, where those names are imported
import base64
import hashlib
import io
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .. import rundir
from ..core.errors import LongtailError
from .uploads import FIELD, UploadError, decode_uploads, parse_uploads, read_body

log = logging.getLogger("longtail")

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
DEFAULT_MAX_UPLOAD_MB = 20.0
MAX_FILES = 32  # images in one request
PAGE = Path(__file__).with_name("page.html")
#: environment variables that carry the settings to uvicorn's worker processes (--workers > 1)
ENV_RUN, ENV_LIMIT, ENV_TOPK = "LONGTAIL_SERVE_RUN", "LONGTAIL_SERVE_MAX_UPLOAD_BYTES", "LONGTAIL_SERVE_TOP_K"


class Service:
    """The loaded run and what the endpoints answer from it; thread-safe scoring."""

    def __init__(self, run_dir: str | Path, top_k: int = 3) -> None:
        from ..evaluation import prediction
        from ..inference.predictor import Predictor

        self.predictor = Predictor(run_dir)
        if self.predictor.clips:
            raise LongtailError(f"'{run_dir}' is a clip run (its inputs are folders of frames); `longtail serve` scores images: "
                                "use `longtail predict RUN_DIR CLIP_FOLDERS` instead")
        if self.predictor.encoding is not None:
            raise LongtailError(f"'{run_dir}' was trained with model.metadata ({', '.join(self.predictor.encoding.names)}), which an upload "
                                "does not carry; `longtail serve` scores images alone: use `longtail predict RUN_DIR IMAGES --metadata FILE.csv`")
        self.top_k = prediction.check_top_k(top_k, len(self.predictor.class_names))
        self.lock = threading.Lock()
        self._explainer: Any = None
        self.explain_problem = self._explain_problem()
        self.run_id = run_id(self.predictor.run_dir)  # hashes the checkpoint: once per process, not per /model call

    def _explain_problem(self) -> str | None:
        """Why this run's model cannot be explained with Grad-CAM (None when it can)."""
        from ..evaluation.explain import cam_target_layer, check_gradient_path

        try:
            import pytorch_grad_cam  # noqa: F401  (the explain extra)

            check_gradient_path(self.predictor.model)
            cam_target_layer(self.predictor.model, self.predictor.cfg.eval.cam_layer)
        except ImportError:
            return "Grad-CAM needs the explain extra: pip install 'longtail[explain]'"
        except LongtailError as e:
            return str(e)
        return None

    def model_info(self) -> dict[str, Any]:
        """``GET /model``: what a client needs to send images and read the answer."""
        p = self.predictor
        results_path = p.run_dir / rundir.RESULTS
        results = rundir.read_json(results_path) if results_path.is_file() else {}
        summary = {split: {k: v for k, v in results[split].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                   for split in ("test", "test_posthoc") if isinstance(results.get(split), dict)}
        return {
            "run": p.run_dir.name,
            "run_id": self.run_id,
            "class_names": p.class_names,
            "input_size": p.meta.get("image_size"),
            "channels": int(p.meta["channels"]),
            "top_k": self.top_k,
            "metrics": summary,
            "calibrated": bool(p.fitted.get("temperature")),
            "prediction_sets": "conformal" in p.fitted,
            "abstention": "selective" in p.fitted,
            "explain": self.explain_problem is None,
        }

    def predict(self, uploads: list[Any], top_k: int | None, explain: bool) -> list[dict[str, Any]]:
        """`predict`'s numbers for each upload, as JSON objects (blocking: call it from a worker thread)."""
        from ..evaluation import prediction

        if explain and self.explain_problem is not None:
            raise UploadError(400, f"explain=true is not available for this run: {self.explain_problem}")
        k = self.top_k if top_k is None else prediction.check_top_k(top_k, len(self.predictor.class_names))
        raw, paths, folder = decode_uploads(uploads, self.predictor.image_decoder())
        try:
            warnings = [prediction.input_warning(path, self.predictor.meta) for path in paths]
        finally:
            folder.cleanup()
        with self.lock:
            scored = self.predictor.score(raw)
            rows = self.predictor.rows(scored, [u.name for u in uploads], warnings, k)
            overlays = self._overlays(raw, scored) if explain else None
        return [self._answer(i, row, scored, k, overlays) for i, row in enumerate(rows)]

    def _answer(self, i: int, row: dict[str, Any], scored: Any, k: int, overlays: list[str] | None) -> dict[str, Any]:
        from ..evaluation import prediction

        names = self.predictor.class_names
        out: dict[str, Any] = {
            "image": row["image"],
            "label": row["label"],
            "probability": row["probability"],
            "top_k": [{"label": row[f"top_{j}"], "probability": row[f"top_{j}_probability"]} for j in range(1, k + 1)],
            "probabilities": dict(zip(names, map(float, scored.probabilities[i]))),
        }
        if scored.calibrated is not None:
            out["calibrated_probabilities"] = dict(zip(names, map(float, scored.calibrated[i])))
        if prediction.PREDICTION_SET in row:
            out["prediction_set"] = [n for n in row[prediction.PREDICTION_SET].split(";") if n]
        if prediction.ABSTAIN in row:
            out["abstain"] = row[prediction.ABSTAIN] == "yes"
        out["warning"] = row[prediction.WARNING]
        if overlays is not None:
            out["overlay"] = overlays[i]
        return out

    def _overlays(self, raw: Any, scored: Any) -> list[str]:
        """Grad-CAM overlays of the predicted classes, as PNG data URLs."""
        from PIL import Image

        from ..evaluation.explain import cam_target_layer, overlays

        if self._explainer is None:
            self._explainer = cam_target_layer(self.predictor.model, self.predictor.cfg.eval.cam_layer)
        images = overlays(self.predictor.model, self._explainer, raw, scored.model_input, np.argmax(scored.shown, axis=1))
        urls = []
        for image in images:
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
            urls.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
        return urls


def run_id(run_dir: Path) -> str:
    """A short id of what the server loaded: sha256 of the run's config.yaml and best checkpoint, 16 hex digits."""
    h = hashlib.sha256()
    for name in (rundir.CONFIG, rundir.BEST):
        path = run_dir / name
        if path.is_file():
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def create_app(service: Service, max_upload_bytes: int) -> Any:
    """The FastAPI application answering from ``service``."""
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title=f"longtail: {service.predictor.run_dir.name}", version="1")
    page = PAGE.read_text(encoding="utf-8")

    @app.exception_handler(UploadError)
    async def _refused(request: Request, e: UploadError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=e.status)

    @app.exception_handler(LongtailError)
    async def _bad_value(request: Request, e: LongtailError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _bad_query(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "query")
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid value')}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:  # logged; the server keeps serving
        log.exception("POST %s failed", request.url.path)
        return JSONResponse({"error": f"unexpected {type(e).__name__} while scoring; see the server log"}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return service.model_info()

    @app.post("/predict")
    async def predict(request: Request, top_k: int | None = Query(None, ge=1, le=1000), explain: bool = False) -> JSONResponse:
        body = await read_body(request.stream(), request.headers.get("content-length"), max_upload_bytes)
        uploads = await parse_uploads(request.headers, body, MAX_FILES)
        answers = await run_in_threadpool(service.predict, uploads, top_k, explain)
        return JSONResponse({"predictions": answers})

    return app


def app_from_env() -> Any:
    """uvicorn's factory in each worker process of ``--workers N``: the settings come in environment variables."""
    service = Service(os.environ[ENV_RUN], int(os.environ.get(ENV_TOPK, "3")))
    return create_app(service, int(os.environ[ENV_LIMIT]))


def serve(run_dir: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, workers: int = 1,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, top_k: int = 3) -> None:
    """Load the run (a bad run directory fails here, before a port is bound) and serve it until stopped."""
    try:
        import uvicorn
    except ImportError:
        raise LongtailError("longtail serve needs FastAPI and uvicorn: pip install 'longtail[serve]'") from None
    if workers < 1:
        raise LongtailError(f"--workers must be at least 1, got {workers}")
    if not 0 < max_upload_mb <= 4096:
        raise LongtailError(f"--max-upload-mb must be in (0, 4096], got {max_upload_mb}")
    if not 0 <= port <= 65535:
        raise LongtailError(f"--port must be in 0 .. 65535, got {port}")
    limit = int(max_upload_mb * 1024 * 1024)
    service = Service(run_dir, top_k)  # checked once here, so a worker never starts on a broken run
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this address can use the model (there is no authentication)", host)
    print(f"serving {service.predictor.run_dir} on http://{host}:{port}/ (POST /predict, GET /model, GET /health); Ctrl-C stops it", flush=True)
    if workers == 1:
        uvicorn.run(create_app(service, limit), host=host, port=port, log_level="warning")
        return
    os.environ.update({ENV_RUN: str(Path(run_dir).resolve()), ENV_LIMIT: str(limit), ENV_TOPK: str(top_k)})
    uvicorn.run("longtail.serving.app:app_from_env", factory=True, host=host, port=port, workers=workers, log_level="warning")


def add_commands(sub: Any) -> None:
    """``longtail serve RUN_DIR [--host H] [--port P] [--workers N] [--max-upload-mb M] [--top-k K]``."""
    p = sub.add_parser("serve", help="serve a run over HTTP: POST /predict, a web page, /health, /model")
    p.add_argument("run_dir", help="a run directory made by `longtail train`")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own copy of the model (default 1)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest request body; a larger one gets 413 (default {DEFAULT_MAX_UPLOAD_MB:g})")
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="labels listed per image (default 3; ?top_k= per request)")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: Any) -> int:
    serve(args.run_dir, args.host, args.port, args.workers, args.max_upload_mb, args.top_k)
    return 0


__all__ = ["FIELD", "Service", "add_commands", "create_app", "run_id", "serve"]
