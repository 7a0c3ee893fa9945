"""Column names that can become model inputs, checked (or mapped) at ingest.

Every feature column becomes a ``keras.Input`` and a key of the SavedModel
serving signature. Keras refuses '/' in a name; TensorFlow refuses a signature
key with a space, ':' or ',' or non-ASCII letters, and silently renames '-' and
'.' to '_' (so serving would expect another name than the data has). Measured
on this stack (TF 2.16, Keras 3): only names of ASCII letters, digits and '_'
that start with a letter pass unchanged. Ingest therefore refuses other names
with the mapping it would use, or applies that mapping when asked to
(``rename_columns=True``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from flywheel.errors import FlywheelError

if TYPE_CHECKING:
    import pandas as pd

COLUMN_RULE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def safe_column_names(columns: list[str]) -> dict[str, str]:
    """Original -> valid, unique name for every column that breaks ``COLUMN_RULE``."""
    taken = {c for c in columns if COLUMN_RULE.match(c)}
    mapping: dict[str, str] = {}
    for column in columns:
        if COLUMN_RULE.match(column):
            continue
        base = _UNSAFE.sub("_", column).strip("_")
        if not base or not base[0].isascii() or not base[0].isalpha():
            base = f"col_{base}" if base else "col"
        candidate, number = base, 2
        while candidate in taken:
            candidate, number = f"{base}_{number}", number + 1
        taken.add(candidate)
        mapping[column] = candidate
    return mapping


def model_ready_columns(
    frame: pd.DataFrame, label: str, where: str, *, rename: bool, error: type[FlywheelError] = FlywheelError
) -> tuple[pd.DataFrame, str, dict[str, str]]:
    """Checks that every column name can be a model input, or renames those that cannot.

    Args:
        frame: The rows read.
        label: The ``label`` parameter of ingest ("" = infer); renamed along with its column.
        where: The file or source, for the message.
        rename: Apply the mapping instead of refusing.
        error: The error class to raise (ingest's ``DataReadError``).

    Returns:
        ``(frame, label, renamed)``: ``renamed`` maps original to new names (empty when none changed).

    Raises:
        FlywheelError: (``error``) a name breaks the rule and ``rename`` is false.
    """
    columns = [str(c) for c in frame.columns]
    if columns != list(frame.columns):
        frame = frame.rename(columns={c: str(c) for c in frame.columns})
    mapping = safe_column_names(columns)
    if not mapping:
        return frame, label, {}
    if not rename:
        shown = ", ".join(f"{old!r} -> {new!r}" for old, new in list(mapping.items())[:10])
        more = f" (and {len(mapping) - 10} more)" if len(mapping) > 10 else ""
        raise error(
            f"{where}: column name(s) {', '.join(repr(c) for c in list(mapping)[:10])}{more} cannot be model "
            "inputs: a column name must start with a letter and hold only letters, digits and '_' "
            "(Keras and TensorFlow's SavedModel refuse or silently rename spaces, '/', '-', '.' and other "
            f"characters). Rename the columns in the data, or pass rename_columns=true to ingest to use {shown}{more}."
        )
    return frame.rename(columns=mapping), mapping.get(label, label), mapping


def model_ready_values(
    frame: pd.DataFrame, where: str, *, error: type[FlywheelError] = FlywheelError, first_row: int = 0
) -> pd.DataFrame:
    """Makes column values storable and trainable, or refuses them.

    * integer columns wider than 64 bits (JSON allows any size; Parquet
      cannot store them) become strings, as pandas reads such numbers from
      CSV, so ids keep their identity;
    * an infinite value is refused: it would turn normalisation and the loss
      into NaN. The message names the column and the first row.

    ``first_row`` is the data row number of the frame's first row (frames read in batches).

    Raises:
        FlywheelError: (``error``) a numeric column holds an infinite value.
    """
    import numpy as np
    import pandas as pd

    for column in frame.columns:
        values = frame[column]
        if values.dtype == object:
            present = values.dropna()
            if len(present) and all(type(v) is int for v in present) and any(abs(v) >= 2**63 for v in present):
                frame[column] = values = values.map(lambda v: v if v is None or v != v else str(v))
        if pd.api.types.is_float_dtype(values.dtype):
            infinite = np.isinf(values.to_numpy(dtype=np.float64, na_value=np.nan))
            if infinite.any():
                row = int(np.argmax(infinite))
                raise error(
                    f"{where}: column {column!r} holds {int(infinite.sum())} infinite value(s) (first at data row "
                    f"{first_row + row + 1}: {values.iloc[row]}); a model cannot learn from them. Replace them with a finite "
                    "number or leave the cell empty (a missing value)."
                )
    return frame
