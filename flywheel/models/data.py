"""Streaming tabular input: a split's Parquet shards as a batched ``tf.data`` pipeline.

``stream_dataset`` feeds a network exactly what ``train``'s in-memory path
feeds it (``features.raw_inputs`` and ``features.encode_labels`` applied to
each record batch: numbers as float32 with NaN for missing, strings with ""
for missing, label ids in vocabulary order), without holding the split:

    shards (in a seeded random order) --interleave(cycle_length)--> record batches
           (``ParquetFile.iter_batches``, rows permuted within each) --unbatch--> rows
           --shuffle(shuffle_buffer, seed)--> batch(batch_size) --> prefetch

Memory is bounded by ``cycle_length`` open readers of ``read_rows`` rows, the
shuffle buffer and the prefetched batches, whatever the split's size. The row
buffer is the costly part (tf.data keeps a tensor per feature per row: about
1 KB a row for five features, measured), hence the three-level shuffle: shard
order, rows within a record batch, then a modest row buffer (``SHUFFLE_BUFFER``).
The order is deterministic for a seed (deterministic interleave; seeded
shuffles, each epoch in another order, the same in every run).

Validation without a ``validation`` split: ``holdout`` keeps or drops the rows
whose *global row index* hashes below ``fraction`` (``hash_fraction``:
splitmix64 of ``index + seed``, mapped to [0, 1)). The split is
deterministic, needs no pass over the data and no label in memory, and is not
stratified: each class's share of the hold-out is ``fraction`` in expectation
only (the in-memory path's stratified hold-out is exact per class).

This module takes shard paths, never an Examples artifact: the components
list them (``examples_io.shard_paths``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from flywheel.errors import FlywheelError, ParameterError
from flywheel.models import features

if TYPE_CHECKING:
    import numpy as np

READ_ROWS = 8192  # rows per Parquet record batch each open reader holds
CYCLE_LENGTH = 4  # shards read at once (interleaved)
_MASK64 = (1 << 64) - 1


def hash_fraction(index: np.ndarray, seed: int) -> np.ndarray:
    """A deterministic value in [0, 1) per global row index (splitmix64 of ``index + seed``)."""
    import numpy as np

    with np.errstate(over="ignore"):
        z = (np.asarray(index, dtype=np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) & _MASK64))
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def shard_rows(shard_paths: list[str]) -> list[int]:
    """Rows per shard, from the Parquet footers (no rows read)."""
    import pyarrow.parquet as pq

    return [pq.ParquetFile(path).metadata.num_rows for path in shard_paths]


def iter_batches(
    shard_paths: list[str],
    spec: dict[str, Any],
    *,
    read_rows: int = READ_ROWS,
    holdout: tuple[str, float, int] | None = None,
    offsets: list[int] | None = None,
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """(raw feature dict, label ids) per record batch of the shards, in shard order.

    Args:
        holdout: ``("keep" | "drop", fraction, seed)``: only rows whose ``hash_fraction``
            is below ``fraction`` ("keep": the validation rows) or not ("drop": the fit rows).
        offsets: Global index of each shard's first row (default: from the footers).
    """
    offsets = offsets if offsets is not None else _offsets(shard_paths)
    for path, offset in zip(shard_paths, offsets):
        yield from _shard_batches(path, offset, spec, read_rows, holdout)


def _offsets(shard_paths: list[str]) -> list[int]:
    import itertools

    return [0, *itertools.accumulate(shard_rows(shard_paths))][: len(shard_paths)]


def _shard_batches(
    path: str, offset: int, spec: dict[str, Any], read_rows: int, holdout: tuple[str, float, int] | None,
    rng: Any = None,
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    import numpy as np
    import pyarrow.parquet as pq

    label = spec["label"]
    columns = list(dict.fromkeys([*features.feature_names(spec), label]))
    with pq.ParquetFile(path) as shard:
        present = set(shard.schema_arrow.names)
        missing = [name for name in columns if name not in present]
        if missing:
            raise FlywheelError(
                f"The shard {path} has no column(s) {missing} (columns: {sorted(present)}); "
                "train on Examples with the columns transform saw."
            )
        start = offset
        for batch in shard.iter_batches(batch_size=read_rows, columns=columns):
            frame = batch.to_pandas()
            rows = len(frame)
            if holdout is not None:
                side, fraction, seed = holdout
                chosen = hash_fraction(np.arange(start, start + rows), seed) < fraction
                frame = frame[chosen if side == "keep" else ~chosen]
            start += rows
            if len(frame):
                x, y = features.raw_inputs(frame, spec), features.encode_labels(frame[label], spec["label_vocabulary"])
                if rng is not None:  # rows of a record batch in a seeded random order
                    order = rng.permutation(len(y))
                    x, y = {name: values[order] for name, values in x.items()}, y[order]
                yield x, y


def stream_dataset(
    shard_paths: list[str],
    spec: dict[str, Any],
    batch_size: int,
    *,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    holdout: tuple[str, float, int] | None = None,
    read_rows: int = READ_ROWS,
    cycle_length: int = CYCLE_LENGTH,
    n_classes: int = 0,
) -> Any:
    """A batched ``tf.data.Dataset`` of ``(raw feature dict, label ids)`` read from Parquet shards.

    Args:
        shard_paths: The split's Parquet files (``examples_io.shard_paths``).
        spec: The feature contract (``transform.json``).
        batch_size: Rows per batch.
        shuffle_buffer: Rows in the shuffle buffer; 0 keeps the interleaved order.
        seed: Shuffle seed (the order is the same in every run for a seed).
        holdout: See ``iter_batches`` (the hash-of-row-index hold-out).
        read_rows: Rows per Parquet record batch.
        cycle_length: Shards read at once.
        n_classes: > 0 one-hot encodes the labels (float32).

    Raises:
        ParameterError: no shards, or a size argument is not a positive int.
    """
    import tensorflow as tf

    if not shard_paths:
        raise ParameterError("stream_dataset needs at least one Parquet shard; got an empty list of shard paths.")
    for name, value, low in (("batch_size", batch_size, 1), ("read_rows", read_rows, 1),
                             ("cycle_length", cycle_length, 1), ("shuffle_buffer", shuffle_buffer, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ParameterError(f"The '{name}' argument of stream_dataset must be an int >= {low}. Got {value!r} instead.")
    offsets = _offsets(shard_paths)
    signature = (
        {
            name: tf.TensorSpec(shape=(None,), dtype=tf.string if name in spec["categorical_features"] else tf.float32)
            for name in features.feature_names(spec)
        },
        tf.TensorSpec(shape=(None,), dtype=tf.int32),
    )

    import numpy as np

    passes = [0] * len(shard_paths)  # reads of each shard so far: the epoch, for the in-batch order

    def shard_dataset(index: Any) -> Any:
        def generate(i: Any) -> Iterator[Any]:
            i = int(i)
            rng = None if not shuffle_buffer else np.random.default_rng([seed or 0, i, passes[i]])
            passes[i] += 1
            yield from _shard_batches(shard_paths[i], offsets[i], spec, read_rows, holdout, rng)

        return tf.data.Dataset.from_generator(generate, args=(index,), output_signature=signature)

    shards = tf.data.Dataset.range(len(shard_paths))
    if shuffle_buffer > 0:  # shard order, then rows within each record batch, then the row buffer
        shards = shards.shuffle(len(shard_paths), seed=seed, reshuffle_each_iteration=True)
    dataset = shards.interleave(
        shard_dataset, cycle_length=min(cycle_length, len(shard_paths)), block_length=1
    )
    dataset = dataset.unbatch()
    if shuffle_buffer > 0:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if n_classes:
        dataset = dataset.map(lambda x, y: (x, tf.one_hot(y, n_classes)))
    return dataset.prefetch(2)


SHUFFLE_BUFFER = 10_000  # rows in the row-level buffer (after the shard-order and in-batch shuffles)


class StreamSplit:
    """One split to stream (its shards, the feature contract, an optional hold-out), for ``train``.

    ``dataset`` builds the ``tf.data`` pipeline; ``label_counts`` and ``len`` come from one pass over
    the label column only (cached), so class weights and row counts need no feature in memory.
    """

    def __init__(
        self, shard_paths: list[str], spec: dict[str, Any], *, holdout: tuple[str, float, int] | None = None,
        shuffle_buffer: int = SHUFFLE_BUFFER,
    ) -> None:
        self.shard_paths = list(shard_paths)
        self.spec = spec
        self.holdout = holdout
        self.shuffle_buffer = shuffle_buffer
        self._counts: np.ndarray | None = None

    def dataset(self, batch_size: int, shuffle_seed: int | None = None) -> Any:
        """Batches of (raw features, label ids); shuffled (bounded buffer, seeded) when ``shuffle_seed`` is given."""
        return stream_dataset(
            self.shard_paths, self.spec, batch_size, holdout=self.holdout, seed=shuffle_seed,
            shuffle_buffer=self.shuffle_buffer if shuffle_seed is not None else 0,
        )

    def label_counts(self, n_classes: int | None = None) -> np.ndarray:
        """Rows per label id (vocabulary order)."""
        import numpy as np
        import pyarrow.parquet as pq

        if self._counts is None:
            vocabulary = self.spec["label_vocabulary"]
            counts = np.zeros(len(vocabulary), dtype=np.int64)
            label = self.spec["label"]
            for path, offset in zip(self.shard_paths, _offsets(self.shard_paths)):
                with pq.ParquetFile(path) as shard:
                    start = offset
                    for batch in shard.iter_batches(batch_size=65_536, columns=[label]):
                        frame = batch.to_pandas()
                        rows = len(frame)
                        if self.holdout is not None:
                            side, fraction, seed = self.holdout
                            chosen = hash_fraction(np.arange(start, start + rows), seed) < fraction
                            frame = frame[chosen if side == "keep" else ~chosen]
                        start += rows
                        ids = features.encode_labels(frame[label], vocabulary)
                        counts += np.bincount(ids, minlength=len(vocabulary))
            self._counts = counts
        return self._counts if n_classes is None else np.pad(self._counts, (0, max(0, n_classes - len(self._counts))))

    def __len__(self) -> int:
        return int(self.label_counts().sum())
