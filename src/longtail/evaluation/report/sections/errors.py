"""The "Most confident errors" section: thumbnails of the test images the model got wrong most confidently.

Reads predictions/errors.npz (written at evaluation, see ``evaluation.gallery``), so the report
needs no access to the dataset.
"""

from __future__ import annotations

import numpy as np

from ..figures import figure_gallery
from ..run import Run
from ..section import Section


def error_gallery_sections(run: Run) -> list[Section]:
    """The gallery figure; none when the run stored no errors."""
    errors = run.run_dir / "predictions" / "errors.npz"
    if not errors.is_file():
        return []
    with np.load(errors) as data:
        loaded = {k: data[k] for k in data.files}
    gallery = Section("Most confident errors (test)", figures=[("errors", figure_gallery(loaded, run.class_names))])
    gallery.text.append(f"The {len(loaded['targets'])} test images the model got wrong with the highest predicted probability "
                        "(true class, predicted class and its probability).")
    return [gallery]
