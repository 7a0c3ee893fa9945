"""Data that ships with the installed packages, exported for demos and tests.

Nothing here downloads anything: scikit-learn carries the 1,797 8x8 images of
handwritten digits (``sklearn.datasets.load_digits``) in its wheel.
``export_digits`` writes them in the two image layouts ``ingest`` reads:

* ``format="folders"``: ``<dest>/<digit>/<index>.png``, one folder per class
  (8-bit grayscale PNG, written with pillow);
* ``format="npz"``: ``<dest>`` is an ``.npz`` file with ``images`` (uint8,
  shape (1797, 8, 8, 1)) and ``labels`` (int64), loadable with ``allow_pickle=False``.

Both hold the same pixels: scikit-learn's 0..16 intensities scaled to 0..255
and rounded (``digits_arrays``), so either layout ingests to the same images in
the same splits (``ingest`` splits by a hash of each image; only the order differs).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from flywheel.errors import FlywheelError, ParameterError

if TYPE_CHECKING:
    import numpy as np

DIGITS_FORMATS = ("folders", "npz")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(images uint8 (1797, 8, 8, 1) in 0..255, labels int64 (1797,))``."""
    import numpy as np
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype("uint8")[..., None]
    return images, bunch.target.astype("int64")


def export_digits(dest: str, format: str = "folders", *, overwrite: bool = False) -> str:  # noqa: A002
    """Writes scikit-learn's bundled digits as a class-folder PNG tree or an ``.npz`` file.

    Args:
        dest: Directory (``folders``) or file path (``npz``; ``.npz`` is added
            when missing, as numpy does).
        format: ``"folders"`` or ``"npz"``.
        overwrite: Replace existing content at ``dest`` (else refuse to touch it).

    Returns:
        The path written (the directory, or the ``.npz`` file).

    Raises:
        ParameterError: ``format`` is unknown.
        FlywheelError: ``dest`` exists and is not empty, and ``overwrite`` is False.
    """
    import numpy as np

    if format not in DIGITS_FORMATS:
        raise ParameterError(
            f"The 'format' parameter of export_digits must be one of {', '.join(map(repr, DIGITS_FORMATS))}. "
            f"Got {format!r} instead."
        )
    images, labels = digits_arrays()
    dest = os.path.expanduser(dest)
    if format == "npz":
        path = dest if dest.endswith(".npz") else dest + ".npz"
        if os.path.exists(path) and not overwrite:
            raise FlywheelError(f"{path} exists already; pass overwrite=True or choose another path.")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        np.savez_compressed(path, images=images, labels=labels)
        return path

    from PIL import Image

    if os.path.isdir(dest) and os.listdir(dest) and not overwrite:
        raise FlywheelError(f"Directory {dest} is not empty; pass overwrite=True or choose an empty directory.")
    for digit in range(10):
        os.makedirs(os.path.join(dest, str(digit)), exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image[..., 0], mode="L").save(os.path.join(dest, str(int(label)), f"{index:04d}.png"))
    return dest
