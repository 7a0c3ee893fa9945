"""Image sources of ``ingest``: a class-folder tree of PNG/JPEG files, or an ``.npz`` of arrays.

* Folder tree: ``<root>/<class name>/<file>.png|.jpg|.jpeg`` (any depth below
  the class folder); hidden and ``_*`` entries are skipped. Every class
  folder must hold at least one image; a file that pillow cannot decode stops
  the run with its path. All images must share one size, unless
  ``image_size=[height, width]`` is given, which resizes every image
  (bilinear). Grayscale images stay 1 channel; if any image has colour, all
  become RGB (3 channels).
* ``.npz``: pixels under ``x`` or ``images`` (N, H, W) or (N, H, W, C), labels
  under ``y`` or ``labels`` (N,); read with ``allow_pickle=False``.

The split is decided by a hash of each image's pixels and label (so a given
image lands in the same split on every run, and exact duplicates land
together), as for table rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from flywheel.errors import FlywheelError

if TYPE_CHECKING:
    import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
PIXEL_KEYS = ("x", "images")
LABEL_KEYS = ("y", "labels")
LABEL_COLUMN = "label"
BUCKETS = 1_000_000


class ImageReadError(FlywheelError):
    """An image source cannot be found, decoded, or does not fit the rules of ingest."""


def is_image_source(path: str) -> bool:
    """Whether ``path`` is an ``.npz`` file or a directory that holds images and no table files."""
    from flywheel.components.ingest import EXTENSIONS

    if path.endswith(".npz") and os.path.isfile(path):
        return True
    if not os.path.isdir(path):
        return False
    has_images = False
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        for name in names:
            extension = os.path.splitext(name)[1].lower()
            if extension in EXTENSIONS:
                return False
            has_images = has_images or extension in IMAGE_EXTENSIONS
    return has_images


def read_image_source(path: str, image_size: list[int] | None = None, *, npz: bool = False) -> dict[str, Any]:
    """Reads a folder tree or an ``.npz`` (``npz=True`` or by extension) into arrays.

    Returns:
        ``{"images": uint8/float32 (N, H, W, C), "labels": list of str,
        "class_names": list of str, "files": list of str or None}``.

    Raises:
        ImageReadError: see the module docstring for the rules.
    """
    if npz or path.endswith(".npz"):
        if not os.path.isfile(path):
            raise ImageReadError(f"{path} is not a file; format='npz' reads one .npz archive.")
        return _read_npz(path, image_size)
    if not os.path.isdir(path):
        raise ImageReadError(f"{path} is not a directory; format='images' reads a tree of class folders.")
    return _read_folders(path, image_size)


def _read_folders(root: str, image_size: list[int] | None) -> dict[str, Any]:
    import numpy as np

    classes = sorted(
        d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith((".", "_"))
    )
    if not classes:
        raise ImageReadError(
            f"Image directory {root} has no class folders; put each class's images in a folder named "
            "after the class (<root>/<class>/<image>.png)."
        )
    files: list[str] = []
    labels: list[str] = []
    for name in classes:
        found = []
        for directory, dirs, names in os.walk(os.path.join(root, name)):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            found += [
                os.path.join(directory, n)
                for n in sorted(names)
                if not n.startswith((".", "_")) and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
            ]
        if not found:
            raise ImageReadError(
                f"Class folder {os.path.join(root, name)} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "remove the folder or add images to it."
            )
        files += found
        labels += [name] * len(found)
    pictures = [_decode(f) for f in files]
    color = any(p.mode not in ("L", "1", "I;16", "I", "F") for p in pictures)
    pictures = [p.convert("RGB" if color else "L") for p in pictures]
    sizes = {p.size for p in pictures}  # pillow sizes are (width, height)
    if image_size:
        height, width = (int(v) for v in image_size)
        pictures = [p if p.size == (width, height) else p.resize((width, height)) for p in pictures]
    elif len(sizes) > 1:
        first = pictures[0].size
        odd = next(i for i, p in enumerate(pictures) if p.size != first)
        raise ImageReadError(
            f"Images under {root} have {len(sizes)} different sizes: {files[0]} is {first[1]}x{first[0]} "
            f"but {files[odd]} is {pictures[odd].size[1]}x{pictures[odd].size[0]} (height x width); "
            "resize them or pass image_size=[height, width] to ingest."
        )
    array = np.stack([np.asarray(p, dtype="uint8") for p in pictures])
    if array.ndim == 3:
        array = array[..., None]
    return {
        "images": array,
        "labels": labels,
        "class_names": classes,
        "files": [os.path.relpath(f, root) for f in files],
    }


def _decode(path: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            picture.load()
            return picture.copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageReadError(
            f"{path} cannot be read as an image ({type(exc).__name__}: {exc}); fix or remove the file."
        ) from exc


def _read_npz(path: str, image_size: list[int] | None) -> dict[str, Any]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as exc:
        raise ImageReadError(
            f"{path} cannot be read as an .npz archive of plain arrays ({exc}); object arrays are refused "
            "(allow_pickle=False)."
        ) from exc
    pixel_key = next((k for k in PIXEL_KEYS if k in arrays), None)
    label_key = next((k for k in LABEL_KEYS if k in arrays), None)
    if pixel_key is None or label_key is None:
        raise ImageReadError(
            f"{path} must hold the pixels under 'x' or 'images' and the labels under 'y' or 'labels'; "
            f"it holds {sorted(arrays) or 'nothing'}."
        )
    images, raw_labels = arrays[pixel_key], arrays[label_key]
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or raw_labels.ndim != 1 or len(images) != len(raw_labels) or not len(images):
        raise ImageReadError(
            f"{path}: '{pixel_key}' must be (N, height, width[, channels]) and '{label_key}' (N,) with N > 0; "
            f"got shapes {arrays[pixel_key].shape} and {raw_labels.shape}."
        )
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ImageReadError(f"{path}: pixels must be integers or floats; got dtype {images.dtype}.")
    images = images.astype("uint8") if images.dtype == np.uint8 else images.astype("float32")
    if image_size and tuple(images.shape[1:3]) != tuple(int(v) for v in image_size):
        import tensorflow as tf

        resized = tf.image.resize(images.astype("float32"), [int(v) for v in image_size]).numpy()
        images = np.rint(resized).clip(0, 255).astype("uint8") if images.dtype == np.uint8 else resized
    labels = [_label_text(v) for v in raw_labels.tolist()]
    return {"images": images, "labels": labels, "class_names": sort_class_names(labels), "files": None}


def _label_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return str(value)


def sort_class_names(labels: list[str]) -> list[str]:
    """Distinct labels, numerically when all are integers ("2" before "10"), else alphabetically."""
    distinct = set(labels)
    if all(v.lstrip("-").isdigit() for v in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


def split_images(images: Any, labels: list[str], eval_ratio: float) -> np.ndarray:
    """A boolean "goes to eval" mask from a hash of each image's bytes and label."""
    import numpy as np

    mask = np.zeros(len(labels), dtype=bool)
    for i, (image, label) in enumerate(zip(images, labels)):
        digest = hashlib.sha256(np.ascontiguousarray(image).tobytes() + b"|" + label.encode()).digest()
        mask[i] = int.from_bytes(digest[:8], "big") % BUCKETS < round(eval_ratio * BUCKETS)
    return mask


def fingerprint(images: Any, labels: list[str], is_eval: Any) -> str:
    """sha256 over pixels, labels and the split."""
    import numpy as np

    digest = hashlib.sha256()
    digest.update(json.dumps({"shape": list(images.shape), "dtype": str(images.dtype)}).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(json.dumps(labels).encode())
    digest.update(np.asarray(is_eval, dtype=bool).tobytes())
    return digest.hexdigest()
