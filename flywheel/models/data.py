"""Streaming tabular input: a split's Parquet shards as a batched ``tf.data`` pipeline.

``stream_dataset`` feeds a network exactly what ``train``'s in-memory path
feeds it (``features.raw_inputs`` and ``features.encode_labels`` applied to
each record batch: numbers as float32 with NaN for missing, strings with ""
for missing, label ids in vocabulary order), without holding the split:

    shards (in a seeded random order) --interleave(cycle_length)--> record batches
           (``ParquetFile.iter_batches``, rows permuted within each) --row buffer (shuffle_buffer rows,
           seeded draws)--> batches of batch_size --> tf.data (from_generator) --> prefetch

Memory is bounded by ``cycle_length`` open readers of ``read_rows`` rows, the
shuffle buffer and the prefetched batches, whatever the split's size. The
shuffle has three levels: shard order, rows within a record batch, then a row
buffer (``SHUFFLE_BUFFER`` rows) from which each record batch's worth of rows
is drawn uniformly. All of it runs on numpy columns in one Python generator:
``tf.data``'s unbatch/shuffle/batch made a tensor per feature per row (about
1 KB and several microseconds a row; 1M rows took ~100 s, now a few seconds).
The order is deterministic for a seed (one seeded generator per epoch, each
epoch in another order, the same in every run).

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
    epochs = [0]  # iterations so far: each epoch is read in another (seeded) order

    def generate() -> Iterator[Any]:
        import numpy as np

        rng = np.random.default_rng([seed or 0, epochs[0]]) if shuffle_buffer else None
        epochs[0] += 1
        order = rng.permutation(len(shard_paths)) if rng is not None else range(len(shard_paths))
        readers = (
            _shard_batches(shard_paths[i], offsets[i], spec, read_rows, holdout, rng) for i in order
        )
        batches = _interleave(readers, cycle_length)
        if rng is not None:
            batches = _buffer_shuffle(batches, shuffle_buffer, rng)
        yield from _rebatch(batches, batch_size)

    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    if n_classes:
        dataset = dataset.map(lambda x, y: (x, tf.one_hot(y, n_classes)))
    return dataset.prefetch(2)


Batch = tuple[dict[str, Any], Any]  # (feature name -> numpy column, label ids)


def _interleave(readers: Iterator[Iterator[Batch]], cycle_length: int) -> Iterator[Batch]:
    """Record batches of ``cycle_length`` readers at once, one from each in turn (as ``tf.data``'s interleave).

    An exhausted reader's place goes to the next reader; the order is deterministic.
    """
    cycle: list[Iterator[Batch]] = []
    readers = iter(readers)
    while True:
        while len(cycle) < cycle_length and (reader := next(readers, None)) is not None:
            cycle.append(reader)
        if not cycle:
            return
        for reader in list(cycle):
            batch = next(reader, None)
            if batch is None:
                cycle.remove(reader)
            else:
                yield batch


def _take(batch: Batch, index: Any) -> Batch:
    x, y = batch
    return {name: values[index] for name, values in x.items()}, y[index]


def _concat(first: Batch | None, second: Batch) -> Batch:
    import numpy as np

    if first is None or not len(first[1]):
        return second
    return {name: np.concatenate([values, second[0][name]]) for name, values in first[0].items()}, np.concatenate(
        [first[1], second[1]]
    )


def _buffer_shuffle(batches: Iterator[Batch], buffer_rows: int, rng: Any) -> Iterator[Batch]:
    """Rows through a bounded shuffle buffer of ``buffer_rows`` rows, in column arrays.

    Each record batch joins the buffer; as many rows as it brought leave it, drawn uniformly
    at random from everything held (as ``tf.data``'s row-by-row shuffle does, without a
    tensor per row). At the end the buffer is emptied in a random order.
    """
    held: Batch | None = None
    for batch in batches:
        held = _concat(held, batch)
        rows = len(held[1])
        if rows > buffer_rows:
            order = rng.permutation(rows)
            yield _take(held, order[: rows - buffer_rows])
            held = _take(held, order[rows - buffer_rows:])
    if held is not None and len(held[1]):
        yield _take(held, rng.permutation(len(held[1])))


def _rebatch(batches: Iterator[Batch], batch_size: int) -> Iterator[Batch]:
    """Batches of exactly ``batch_size`` rows (the last one smaller) from batches of any size."""
    pending: Batch | None = None
    for batch in batches:
        pending = _concat(pending, batch)
        rows = len(pending[1])
        full = rows - rows % batch_size
        for start in range(0, full, batch_size):
            yield _take(pending, slice(start, start + batch_size))
        pending = _take(pending, slice(full, rows)) if full else pending
    if pending is not None and len(pending[1]):
        yield pending


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
