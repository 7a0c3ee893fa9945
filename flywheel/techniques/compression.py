"""Deep Compression (Han et al., 2016): pruning, weight sharing, Huffman coding, and the ``.fwz`` file.

The three stages, applied to the kernels of a Keras model's ``Dense`` and
``Conv2D`` layers (biases and preprocessing constants stay float32, as in the
paper):

* ``MagnitudePruner``: zero the smallest-magnitude weights of each layer until
  it reaches ``sparsity``, then fine-tune with the mask held (pruned weights
  stay zero).
* ``WeightSharer``: k-means (linear initialisation, as the paper found best)
  of each layer's surviving weights into ``2**bits`` shared values; the
  centroids are then fine-tuned: a centroid's gradient is the sum of the
  gradients of the weights that share it.
* Huffman coding (``huffman_encode``/``huffman_decode``, canonical codes built
  with ``heapq``) of the cluster indices and of the gaps between surviving
  weights' positions.

``write_compressed(model, path, stage=...)`` writes a ``.fwz`` file and
``read_compressed(path)`` decodes it back to a runnable Keras model (loaded with
``safe_mode=True``). Layout: ``b"FWZ1"``, a u32 length and a zlib-compressed
JSON header (the model's Keras config and one entry per weight), then one
block per weight: ``dense`` (float32), ``sparse`` (position gaps + float32
values) or ``shared`` (position gaps + float32 codebook + cluster indices).
Gaps and indices are Huffman-coded (stage ``huffman``) or packed at a fixed
bit width (stages ``pruned`` and ``shared``), so every stage's size is a real
file size.
"""

from __future__ import annotations

import heapq
import json
import struct
import zlib
from typing import Any, ClassVar

import numpy as np

from flywheel.errors import FlywheelError
from flywheel.techniques.base import Interval, Options, Technique

MAGIC = b"FWZ1"
STAGES = ("dense", "pruned", "shared", "huffman")
COMPRESSIBLE = ("Dense", "Conv2D")


# --------------------------------------------------------------------------- Huffman coding


def huffman_code_lengths(counts: dict[int, int]) -> dict[int, int]:
    """Code length per symbol of an optimal prefix code for the given symbol counts."""
    if not counts:
        return {}
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    # Heap items: (weight, tie-breaker, symbols under this node); merging deepens every symbol by one.
    heap = [(count, i, [symbol]) for i, (symbol, count) in enumerate(sorted(counts.items()))]
    heapq.heapify(heap)
    lengths = dict.fromkeys(counts, 0)
    tie = len(heap)
    while len(heap) > 1:
        w1, _, s1 = heapq.heappop(heap)
        w2, _, s2 = heapq.heappop(heap)
        for symbol in s1 + s2:
            lengths[symbol] += 1
        heapq.heappush(heap, (w1 + w2, tie, s1 + s2))
        tie += 1
    return lengths


def canonical_codes(lengths: dict[int, int]) -> dict[int, str]:
    """Canonical Huffman codes (bit strings) from code lengths: only the lengths need storing."""
    codes: dict[int, str] = {}
    code, previous = 0, 0
    for symbol, length in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        code <<= length - previous
        codes[symbol] = format(code, f"0{length}b")
        code += 1
        previous = length
    return codes


def huffman_encode(symbols: Any) -> bytes:
    """Self-describing Huffman block: u16 n, u32 bit count, n code lengths (u8, symbol = position), payload.

    Raises:
        FlywheelError: a symbol is negative or not an integer.
    """
    values = np.asarray(symbols).ravel()
    if values.size and (values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 65534):
        raise FlywheelError(
            f"huffman_encode codes non-negative integers below 65535; got dtype {values.dtype} "
            f"with range {values.min()}..{values.max()}."
        )
    unique, counts = np.unique(values, return_counts=True)
    lengths = huffman_code_lengths({int(s): int(c) for s, c in zip(unique, counts)})
    codes = canonical_codes(lengths)
    bits = "".join(codes[int(s)] for s in values)
    pad = -len(bits) % 8  # left-align the bit string in its bytes
    payload = (int(bits, 2) << pad).to_bytes((len(bits) + 7) // 8, "big") if bits else b""
    n = max(lengths) + 1 if lengths else 0
    table = bytes(lengths.get(symbol, 0) for symbol in range(n))
    return struct.pack("<HI", n, len(bits)) + table + payload


def huffman_decode(data: bytes, offset: int = 0) -> tuple[np.ndarray, int]:
    """Decodes a ``huffman_encode`` block starting at ``offset``; returns (symbols, offset after it)."""
    n_symbols, n_bits = struct.unpack_from("<HI", data, offset)
    offset += 6
    lengths = {symbol: length for symbol, length in enumerate(data[offset : offset + n_symbols]) if length}
    offset += n_symbols
    n_bytes = (n_bits + 7) // 8
    decoder = {code: symbol for symbol, code in canonical_codes(lengths).items()}
    bits = format(int.from_bytes(data[offset : offset + n_bytes], "big"), f"0{n_bytes * 8}b")[:n_bits] if n_bytes else ""
    out, current = [], ""
    for bit in bits:
        current += bit
        symbol = decoder.get(current)
        if symbol is not None:
            out.append(symbol)
            current = ""
    if current:
        raise FlywheelError(f"Corrupt Huffman block: {len(current)} trailing bits match no code.")
    return np.asarray(out, dtype=np.int64), offset + n_bytes


def pack_fixed(values: Any, width: int | None = None) -> bytes:
    """Non-negative integers at a fixed bit width (the smallest that fits, unless given): width u8, count u32, bits."""
    values = np.asarray(values, dtype=np.uint32).ravel()
    if width is None:
        width = max(1, int(values.max()).bit_length()) if values.size else 1
    bits = np.unpackbits(values.astype(">u4").view(np.uint8).reshape(-1, 4), axis=1)[:, 32 - width :]
    return struct.pack("<BI", width, values.size) + np.packbits(bits.ravel()).tobytes()


def unpack_fixed(data: bytes, offset: int = 0) -> tuple[np.ndarray, int]:
    """Decodes a ``pack_fixed`` block; returns (values, offset after it)."""
    width, count = struct.unpack_from("<BI", data, offset)
    offset += 5
    n_bytes = (width * count + 7) // 8
    bits = np.unpackbits(np.frombuffer(data, np.uint8, n_bytes, offset))[: width * count].reshape(count, width)
    full = np.zeros((count, 32), dtype=np.uint8)
    full[:, 32 - width :] = bits
    return np.packbits(full, axis=1).view(">u4").ravel().astype(np.int64), offset + n_bytes


# --------------------------------------------------------------------------- the .fwz container


def compressible_layers(model: Any) -> list[Any]:
    """The model's top-level Dense and Conv2D layers (their kernels are pruned and shared)."""
    return [layer for layer in model.layers if type(layer).__name__ in COMPRESSIBLE]


def float32_bytes(model: Any) -> int:
    """Bytes of all the model's weights stored as float32 (the uncompressed reference size)."""
    return int(sum(int(np.prod(w.shape)) for w in model.weights) * 4)


def _gap_symbols(gaps: np.ndarray, width: int) -> np.ndarray:
    """Gaps as ``width``-bit symbols; the top symbol ``2**width - 1`` is a filler: skip that many, emit nothing."""
    top = 2**width - 1
    return np.concatenate([[top] * (int(g) // top) + [int(g) % top] for g in gaps]).astype(np.int64) if len(gaps) else gaps


def _positions_block(mask: np.ndarray, huffman: bool) -> bytes:
    """Positions of the surviving weights as relative gaps (Han et al.'s relative index with filler entries).

    The gap width is chosen per layer (1..8 bits) to make the block smallest.
    """
    positions = np.flatnonzero(mask.ravel())
    gaps = np.diff(np.concatenate([[-1], positions])) - 1  # zeros skipped before each surviving weight
    blocks = []
    for width in range(1, 9):
        symbols = _gap_symbols(gaps, width)
        blocks.append(bytes([width]) + (huffman_encode(symbols) if huffman else pack_fixed(symbols, width)))
    return min(blocks, key=len)


def _read_positions(data: bytes, offset: int, huffman: bool) -> tuple[np.ndarray, int]:
    top = 2 ** data[offset] - 1
    symbols, offset = huffman_decode(data, offset + 1) if huffman else unpack_fixed(data, offset + 1)
    positions, cursor = [], 0
    for symbol in symbols.tolist():
        if symbol == top:
            cursor += top
        else:
            positions.append(cursor + symbol)
            cursor += symbol + 1
    return np.asarray(positions, dtype=np.int64), offset


def write_compressed(model: Any, path: str, *, stage: str = "huffman", codes: dict[str, tuple[Any, Any]] | None = None) -> int:
    """Writes ``model`` as a ``.fwz`` file at the given stage; returns the file's size in bytes.

    Args:
        model: A Keras model (its config must load with ``safe_mode=True``).
        path: File to write.
        stage: ``dense`` (all float32), ``pruned`` (kernels sparse, zeros
            dropped), ``shared`` (kernels as codebook + fixed-width indices) or
            ``huffman`` (as ``shared``, Huffman-coded).
        codes: For ``shared``/``huffman``: layer name -> (codebook, indices),
            indices shaped like the kernel, -1 where pruned (``WeightSharer.codes_``).

    Raises:
        FlywheelError: unknown stage, or a shared stage without codes for every compressible layer.
    """
    import keras

    if stage not in STAGES:
        raise FlywheelError(f"write_compressed's stage must be one of {STAGES}; got {stage!r}.")
    kernels = {id(layer.kernel): layer.name for layer in compressible_layers(model)}
    if stage in ("shared", "huffman"):
        missing = sorted(set(kernels.values()) - set(codes or {}))
        if missing:
            raise FlywheelError(
                f"Stage {stage!r} needs a codebook for every Dense/Conv2D layer; none for {missing}. "
                "Pass codes=WeightSharer(...).fit(...).codes_."
            )
    entries, blocks = [], []
    huffman = stage == "huffman"
    for weight in model.weights:
        value = np.asarray(weight.numpy(), dtype=np.float32)
        name = kernels.get(id(weight))
        if name is None or stage == "dense":
            entries.append({"encoding": "dense", "shape": list(value.shape)})
            blocks.append(value.tobytes())
        elif stage == "pruned":
            mask = value != 0
            entries.append({"encoding": "sparse", "shape": list(value.shape), "layer": name})
            blocks.append(_positions_block(mask, False) + value[mask].astype("<f4").tobytes())
        else:
            codebook, indices = (np.asarray(a) for a in codes[name])
            mask = indices >= 0
            symbols = indices[mask]
            entries.append({"encoding": "shared", "shape": list(value.shape), "layer": name, "k": int(len(codebook))})
            stream = huffman_encode(symbols) if huffman else pack_fixed(symbols, max(1, (len(codebook) - 1).bit_length()))
            blocks.append(_positions_block(mask, huffman) + codebook.astype("<f4").tobytes() + stream)
    header = {"config": keras.saving.serialize_keras_object(model), "weights": entries, "stage": stage}
    packed = zlib.compress(json.dumps(header).encode(), 9)
    data = MAGIC + struct.pack("<I", len(packed)) + packed + b"".join(blocks)
    with open(path, "wb") as handle:
        handle.write(data)
    return len(data)


def read_compressed(path: str) -> Any:
    """Decodes a ``.fwz`` file into a runnable Keras model.

    Raises:
        FlywheelError: the file is not a ``.fwz`` file or is truncated.
    """
    import keras

    from flywheel.models import layers as model_layers

    with open(path, "rb") as handle:
        data = handle.read()
    if data[:4] != MAGIC:
        raise FlywheelError(f"{path} is not a .fwz file (magic {data[:4]!r}, expected {MAGIC!r}).")
    (length,) = struct.unpack_from("<I", data, 4)
    header = json.loads(zlib.decompress(data[8 : 8 + length]))
    huffman = header["stage"] == "huffman"
    model_layers.custom_objects()
    model = keras.saving.deserialize_keras_object(header["config"], safe_mode=True)
    offset, values = 8 + length, []
    for entry in header["weights"]:
        shape = tuple(entry["shape"])
        size = int(np.prod(shape))
        if entry["encoding"] == "dense":
            values.append(np.frombuffer(data, "<f4", size, offset).reshape(shape))
            offset += 4 * size
            continue
        positions, offset = _read_positions(data, offset, huffman)
        flat = np.zeros(size, dtype=np.float32)
        if entry["encoding"] == "sparse":
            flat[positions] = np.frombuffer(data, "<f4", len(positions), offset)
            offset += 4 * len(positions)
        else:
            codebook = np.frombuffer(data, "<f4", entry["k"], offset)
            offset += 4 * entry["k"]
            symbols, offset = huffman_decode(data, offset) if huffman else unpack_fixed(data, offset)
            flat[positions] = codebook[symbols]
        values.append(flat.reshape(shape))
    if offset != len(data) or len(values) != len(model.weights):
        raise FlywheelError(f"{path} is truncated or corrupt: decoded {offset} of {len(data)} bytes.")
    for weight, value in zip(model.weights, values):
        weight.assign(value)
    return model


# --------------------------------------------------------------------------- the two trained stages


def _clone(model: Any) -> Any:
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _check_data(owner: str, model: Any, x: Any, y: Any) -> int:
    """Rows of ``x``; refuses a model without Dense/Conv2D layers and x/y of different lengths."""
    if model is None or not hasattr(model, "layers"):
        raise FlywheelError(f"{owner}.fit needs a Keras model; got {type(model).__name__}.")
    if not compressible_layers(model):
        raise FlywheelError(f"{owner}.fit needs a model with Dense or Conv2D layers; {model.name} has none.")
    lengths = {len(v) for v in x.values()} if isinstance(x, dict) else {len(x)}
    if len(lengths) != 1 or len(y) not in lengths:
        raise FlywheelError(
            f"{owner}.fit needs as many labels as rows; got {sorted(lengths)} row(s) and {len(y)} labels. "
            "Pass x and y of the same length."
        )
    return len(y)


def _dataset(x: Any, y: Any, batch_size: int, seed: int | None) -> Any:
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, np.asarray(y)))
    if seed is not None:
        dataset = dataset.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size)


class MagnitudePruner(Technique):
    """Magnitude pruning of every Dense/Conv2D kernel to a target sparsity, with masked fine-tuning.

    ``scope="layer"`` prunes each kernel to ``sparsity``; ``"global"`` uses one
    magnitude threshold over all kernels (small, sensitive layers such as the
    first convolution keep more weights). ``steps`` > 1 prunes iteratively
    (Han et al.): sparsity grows to the target in ``steps`` equal steps, each
    followed by ``fine_tune_epochs`` of fine-tuning.

    Learned attributes: ``model_`` (the pruned, fine-tuned copy; the input
    model is not changed), ``masks_`` (layer name -> bool array, True where a
    weight survives), ``sparsity_`` (achieved share of zero kernel weights).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "sparsity": [Interval(float, 0, 1, closed="left")],
        "scope": [Options({"layer", "global"})],
        "steps": [Interval(int, 1, None)],
        "fine_tune_epochs": [Interval(int, 0, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "batch_size": [Interval(int, 1, None)],
        "random_state": ["random_state"],
    }

    def __init__(
        self, *, sparsity: float = 0.9, scope: str = "layer", steps: int = 1, fine_tune_epochs: int = 3,
        learning_rate: float = 1e-3, batch_size: int = 32, random_state: int | None = 0,
    ) -> None:
        self.sparsity = sparsity
        self.scope = scope
        self.steps = steps
        self.fine_tune_epochs = fine_tune_epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, model: Any, x: Any, y: Any) -> MagnitudePruner:
        """Prunes a copy of ``model`` and fine-tunes it on (x, y) (integer labels, softmax outputs).

        Raises:
            ParameterError: a parameter breaks its rule.
            FlywheelError: no Dense/Conv2D layer, or x and y differ in length.
        """
        import keras

        self._validate_params()
        _check_data(type(self).__name__, model, x, y)
        if self.random_state is not None:
            keras.utils.set_random_seed(self.random_state)
        pruned = _clone(model)
        layers = compressible_layers(pruned)
        masks: dict[str, np.ndarray] = {}

        class HoldMask(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                for layer in layers:
                    layer.kernel.assign(layer.kernel * masks[layer.name])

        pruned.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate), loss=keras.losses.SparseCategoricalCrossentropy()
        )
        for step in range(1, self.steps + 1):
            masks.update(self._masks(layers, self.sparsity * step / self.steps))
            for layer in layers:
                layer.kernel.assign(layer.kernel * masks[layer.name])
            if self.fine_tune_epochs:
                pruned.fit(
                    _dataset(x, y, self.batch_size, self.random_state or 0), epochs=self.fine_tune_epochs,
                    callbacks=[HoldMask()], verbose=0,
                )
        self.model_ = pruned
        self.masks_ = masks
        total = sum(m.size for m in masks.values())
        self.sparsity_ = float(1 - sum(int(m.sum()) for m in masks.values()) / total)
        return self

    def _masks(self, layers: list[Any], sparsity: float) -> dict[str, np.ndarray]:
        """Keep-masks at ``sparsity``: the smallest magnitudes per layer, or below one global threshold."""
        kernels = {layer.name: np.abs(np.asarray(layer.kernel.numpy())) for layer in layers}
        if self.scope == "global":
            pooled = np.sort(np.concatenate([k.ravel() for k in kernels.values()]), kind="stable")
            n_zero = int(round(sparsity * pooled.size))
            threshold = pooled[n_zero - 1] if n_zero else -1.0
            return {name: k > threshold for name, k in kernels.items()}
        masks = {}
        for name, kernel in kernels.items():
            mask = np.ones(kernel.size, dtype=bool)
            mask[np.argsort(kernel.ravel(), kind="stable")[: int(round(sparsity * kernel.size))]] = False
            masks[name] = mask.reshape(kernel.shape)
        return masks

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        x, y, build = _tiny_problem()

        def call(technique: Technique) -> list[Any]:
            technique.fit(build(), x, y)
            return [technique.model_.predict(x[:8], verbose=0), technique.masks_["hidden"].astype(int)]

        return {
            "params": {"sparsity": 0.5, "fine_tune_epochs": 1, "batch_size": 16, "random_state": 0},
            "bad_params": [{"sparsity": 1.0}, {"scope": "model"}, {"steps": 0}, {"fine_tune_epochs": -1}, {"learning_rate": 0}, {"random_state": -2}],
            "call": call,
            "bad_input": lambda technique: technique.fit(build(), x, y[:-3]),
            "shapes": lambda result: result[0].shape == (8, 2) and result[1].shape == (4, 8),
        }


class WeightSharer(Technique):
    """Weight sharing: k-means of each Dense/Conv2D kernel's surviving weights, with centroid fine-tuning.

    Zero weights (pruned) stay zero and are not clustered. Each layer gets
    ``min(2**bits, surviving weights)`` centroids, initialised linearly over
    [min, max] of its weights. Fine-tuning updates the centroids by Adam with
    the summed gradient of the weights that share each one.

    Learned attributes: ``model_`` (the shared, fine-tuned copy), ``codes_``
    (layer name -> (codebook float32 array, int indices shaped like the
    kernel, -1 where pruned)), ``history_`` (``{"loss": [...]}`` per epoch).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "bits": [Interval(int, 1, 16)],
        "kmeans_iterations": [Interval(int, 1, None)],
        "fine_tune_epochs": [Interval(int, 0, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "batch_size": [Interval(int, 1, None)],
        "init": [Options({"linear", "random"})],
        "random_state": ["random_state"],
    }

    def __init__(
        self, *, bits: int = 4, kmeans_iterations: int = 30, fine_tune_epochs: int = 2, learning_rate: float = 1e-3,
        batch_size: int = 32, init: str = "linear", random_state: int | None = 0,
    ) -> None:
        self.bits = bits
        self.kmeans_iterations = kmeans_iterations
        self.fine_tune_epochs = fine_tune_epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.init = init
        self.random_state = random_state

    def _kmeans(self, weights: np.ndarray, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
        k = min(2**self.bits, weights.size)
        if self.init == "linear":
            centroids = np.linspace(weights.min(), weights.max(), k)
        else:
            centroids = rng.choice(weights, size=k, replace=False)
        for _ in range(self.kmeans_iterations):
            order = np.argsort(centroids)
            centroids = centroids[order]
            edges = (centroids[1:] + centroids[:-1]) / 2
            labels = np.searchsorted(edges, weights)
            sums = np.bincount(labels, weights=weights, minlength=k)
            counts = np.bincount(labels, minlength=k)
            updated = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
            if np.allclose(updated, centroids):
                break
            centroids = updated
        edges = (centroids[1:] + centroids[:-1]) / 2
        return centroids.astype(np.float32), np.searchsorted(edges, weights)

    def fit(self, model: Any, x: Any, y: Any) -> WeightSharer:
        """Clusters a copy of ``model``'s kernels and fine-tunes the centroids on (x, y).

        Raises:
            ParameterError: a parameter breaks its rule.
            FlywheelError: no Dense/Conv2D layer, or x and y differ in length.
        """
        import keras
        import tensorflow as tf

        self._validate_params()
        _check_data(type(self).__name__, model, x, y)
        if self.random_state is not None:
            keras.utils.set_random_seed(self.random_state)
        rng = np.random.RandomState(self.random_state)
        shared = _clone(model)
        layers = compressible_layers(shared)
        codes, segments, centroids = {}, [], []
        for layer in layers:
            kernel = np.asarray(layer.kernel.numpy())
            mask = kernel != 0
            indices = np.full(kernel.shape, -1, dtype=np.int64)
            codebook, labels = self._kmeans(kernel[mask].astype(np.float64), rng) if mask.any() else (np.zeros(1, np.float32), [])
            indices[mask] = labels
            codes[layer.name] = (codebook, indices)
            # Segment len(codebook) collects the pruned positions; its gradient is dropped.
            segments.append(tf.constant(np.where(indices >= 0, indices, len(codebook)).ravel(), dtype=tf.int32))
            centroids.append(keras.Variable(codebook, name=f"{layer.name}_centroids"))

        def project() -> None:
            for layer, segment, centroid in zip(layers, segments, centroids):
                table = tf.concat([tf.convert_to_tensor(centroid), tf.zeros([1])], axis=0)
                layer.kernel.assign(tf.reshape(tf.gather(table, segment), layer.kernel.shape))

        project()
        losses = []
        if self.fine_tune_epochs:
            optimizer = keras.optimizers.Adam(self.learning_rate)
            loss_fn = keras.losses.SparseCategoricalCrossentropy()
            kernels = [layer.kernel for layer in layers]

            @tf.function
            def step(xb: Any, yb: Any) -> Any:
                with tf.GradientTape() as tape:
                    loss = loss_fn(yb, shared(xb, training=True))
                grads = tape.gradient(loss, kernels)
                summed = [
                    tf.math.unsorted_segment_sum(tf.reshape(g, [-1]), s, int(c.shape[0]) + 1)[:-1]
                    for g, s, c in zip(grads, segments, centroids)
                ]
                optimizer.apply_gradients(zip(summed, centroids))
                return loss

            for _ in range(self.fine_tune_epochs):
                batch_losses = []
                for xb, yb in _dataset(x, y, self.batch_size, self.random_state or 0):
                    batch_losses.append(float(step(xb, yb)))
                    project()
                losses.append(float(np.mean(batch_losses)))
        self.codes_ = {
            name: (np.asarray(c.numpy(), dtype=np.float32), idx) for (name, (_, idx)), c in zip(codes.items(), centroids)
        }
        self.model_ = shared
        self.history_ = {"loss": losses}
        return self

    @classmethod
    def _contract_case(cls) -> dict[str, Any]:
        x, y, build = _tiny_problem()

        def call(technique: Technique) -> list[Any]:
            technique.fit(build(), x, y)
            codebook, indices = technique.codes_["hidden"]
            return [technique.model_.predict(x[:8], verbose=0), codebook, indices]

        return {
            "params": {"bits": 2, "fine_tune_epochs": 1, "batch_size": 16, "init": "random", "random_state": 0},
            "bad_params": [{"bits": 0}, {"kmeans_iterations": 0}, {"init": "kmeans++"}, {"learning_rate": -1.0}],
            "call": call,
            "bad_input": lambda technique: technique.fit(build(), x, y[:-3]),
            "shapes": lambda result: result[0].shape == (8, 2) and result[1].shape == (4,) and result[2].shape == (4, 8),
        }


def _tiny_problem() -> tuple[np.ndarray, np.ndarray, Any]:
    """64 rows of 4 features, two classes, and a builder of a seeded 4-8-2 MLP."""
    rng = np.random.RandomState(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)

    def build() -> Any:
        import keras

        keras.utils.set_random_seed(0)
        inputs = keras.Input(shape=(4,))
        hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
        return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(hidden))

    return x, y, build
