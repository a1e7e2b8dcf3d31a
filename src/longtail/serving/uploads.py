"""Reading `POST /predict` uploads: every bad request becomes an :class:`UploadError` with a 4xx status.

The body is read with a byte limit before anything is parsed, so an oversize request costs at most
the limit in memory. Each uploaded file is decoded by the run's own :class:`~longtail.data.decode.Decoder`
(the checks `predict` makes: a raster format, at most ``data.max_image_pixels`` pixels, a complete
file), from a private temporary file, so a served image is decoded byte for byte as `predict` decodes it.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import DataError
from ..data.decode import Decoder

#: the multipart field that holds the images (one or several parts of that name)
FIELD = "file"


class UploadError(Exception):
    """A request the server refuses: its HTTP status and a one-line message naming the problem and the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the client gave (or ``image-<i>``) and its bytes."""

    name: str
    data: bytes


async def read_body(stream: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes, declared or streamed."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"the request is {int(declared):,} bytes, above the server's limit of {limit:,}; "
                               "send fewer or smaller images, or restart the server with a larger --max-upload-mb")
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise UploadError(413, f"the request is above the server's limit of {limit:,} bytes; "
                                   "send fewer or smaller images, or restart the server with a larger --max-upload-mb")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_uploads(headers: object, body: bytes, max_files: int) -> list[Upload]:
    """The files of the multipart field ``file``; 400/415 for a body that holds none."""
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    assert isinstance(headers, Headers)
    kind = headers.get("content-type", "")
    if not body:
        raise UploadError(400, f"the request body is empty; send the images as multipart/form-data in the field '{FIELD}'")
    if not kind.lower().startswith("multipart/form-data"):
        raise UploadError(415, f"the content type is '{kind or 'missing'}', not multipart/form-data; send the images as files "
                               f"in the field '{FIELD}' (curl -F {FIELD}=@image.jpg)")

    async def once() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(headers, once(), max_files=max_files, max_fields=16).parse()
    except MultiPartException as e:
        raise UploadError(400, f"the multipart body cannot be read ({e.message}); send at most {max_files} files in the field '{FIELD}'") from None
    try:
        parts = form.getlist(FIELD)
        files = [p for p in parts if isinstance(p, UploadFile)]
        if not files:
            named = sorted(set(form.keys()))
            raise UploadError(400, f"no file in the field '{FIELD}'" + (f" (the request has {', '.join(named)})" if named else "")
                              + f"; send the images as files in the field '{FIELD}'")
        uploads = []
        for i, f in enumerate(files):
            data = await f.read()
            name = clean_name(f.filename, i)
            if not data:
                raise UploadError(400, f"the upload '{name}' is empty; send the image file's bytes")
            uploads.append(Upload(name, data))
        return uploads
    finally:
        await form.close()


def clean_name(filename: str | None, index: int) -> str:
    """A client's file name reduced to a plain base name that prints (``image-<i>`` when none is usable)."""
    base = os.path.basename((filename or "").replace("\\", "/"))
    base = re.sub(r"[^\w.\- ]", "_", base)[:120].strip(" .")
    return base or f"image-{index + 1}"


def decode_uploads(uploads: list[Upload], decoder: Decoder) -> tuple[torch.Tensor, list[Path], tempfile.TemporaryDirectory]:
    """The decoded batch, each upload's temporary file (the caller's input warnings read it) and their folder.

    A file that does not decode is a 422 naming the upload (the decoder's message, with the client's file
    name instead of the temporary path); images of different sizes in a run without ``data.image_size``
    are a 422 too (they cannot be scored as one batch)."""
    folder = tempfile.TemporaryDirectory(prefix="longtail-serve-")
    paths, images = [], []
    try:
        for i, upload in enumerate(uploads):
            path = Path(folder.name) / f"{i}{Path(upload.name).suffix.lower()[:8]}"
            path.write_bytes(upload.data)
            try:
                images.append(decoder(path))
            except DataError as e:
                raise UploadError(422, str(e).replace(str(path), upload.name).replace("or set data.on_bad_image=skip", "send another image")
                                  .replace("; check data.source.root and the paths it holds", "")) from None
            paths.append(path)
        return torch.stack(images), paths, folder
    except BaseException:
        folder.cleanup()
        raise
