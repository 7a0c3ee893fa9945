"""Deep Compression: Huffman coding, the .fwz container, and each stage's round trip."""

from __future__ import annotations

import os

import numpy as np
import pytest

from flywheel.errors import FlywheelError
from flywheel.techniques import compression as dc


def test_huffman_round_trip_and_shorter_codes_for_frequent_symbols():
    rng = np.random.RandomState(0)
    symbols = rng.choice([0, 1, 2, 7, 300], size=2000, p=[0.6, 0.2, 0.1, 0.05, 0.05])
    block = dc.huffman_encode(symbols)
    decoded, end = dc.huffman_decode(block)
    assert end == len(block)
    assert np.array_equal(decoded, symbols)
    lengths = dc.huffman_code_lengths({0: 600, 1: 200, 2: 100, 7: 50, 300: 50})
    assert lengths[0] == 1 and lengths[0] < lengths[1] <= lengths[2] <= lengths[300]
    # Entropy of that distribution is ~1.7 bits; 3-bit fixed packing would take 750 bytes of payload.
    assert len(block) < 2000 * 1.8 / 8 + 301 + 6  # payload + one code length per symbol 0..300 + header


def test_huffman_single_symbol_and_empty_stream_round_trip():
    for symbols in (np.zeros(17, dtype=int), np.zeros(0, dtype=int)):
        decoded, _ = dc.huffman_decode(dc.huffman_encode(symbols))
        assert np.array_equal(decoded, symbols)


def test_huffman_refuses_negative_symbols():
    with pytest.raises(FlywheelError, match="non-negative"):
        dc.huffman_encode(np.array([1, -1]))


def test_fixed_width_packing_round_trips():
    values = np.array([0, 5, 31, 2, 17])
    block = dc.pack_fixed(values)
    decoded, end = dc.unpack_fixed(block)
    assert end == len(block) and np.array_equal(decoded, values)
    assert block[0] == 5  # width: 31 needs 5 bits


@pytest.fixture
def trained():
    import keras

    x, y, build = dc._tiny_problem()
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, verbose=0)
    return model, x, y


def _roundtrip(model, path, **kwargs):
    size = dc.write_compressed(model, str(path), **kwargs)
    assert size == os.path.getsize(path)
    return dc.read_compressed(str(path)), size


def test_every_stage_round_trips_to_the_same_predictions(trained, tmp_path):
    model, x, y = trained
    dense, dense_size = _roundtrip(model, tmp_path / "dense.fwz", stage="dense")
    assert np.array_equal(dense.predict(x, verbose=0), model.predict(x, verbose=0))

    pruner = dc.MagnitudePruner(sparsity=0.75, fine_tune_epochs=2, batch_size=16).fit(model, x, y)
    kernel = pruner.model_.get_layer("hidden").kernel.numpy()
    assert np.count_nonzero(kernel) == 8 and not kernel[~pruner.masks_["hidden"]].any()  # mask held through fine-tuning
    assert pruner.sparsity_ == pytest.approx(0.75, abs=0.02)
    pruned, pruned_size = _roundtrip(pruner.model_, tmp_path / "pruned.fwz", stage="pruned")
    assert np.array_equal(pruned.predict(x, verbose=0), pruner.model_.predict(x, verbose=0))

    sharer = dc.WeightSharer(bits=2, fine_tune_epochs=2, batch_size=16).fit(pruner.model_, x, y)
    codebook, indices = sharer.codes_["hidden"]
    shared_kernel = sharer.model_.get_layer("hidden").kernel.numpy()
    assert len(np.unique(shared_kernel[indices >= 0])) <= 4 and not shared_kernel[indices < 0].any()
    assert np.array_equal(shared_kernel[indices >= 0], codebook[indices[indices >= 0]])
    for stage in ("shared", "huffman"):
        decoded, size = _roundtrip(sharer.model_, tmp_path / f"{stage}.fwz", stage=stage, codes=sharer.codes_)
        assert np.array_equal(decoded.predict(x, verbose=0), sharer.model_.predict(x, verbose=0))
        assert size > 0 and pruned_size < dense_size  # sizes of tiny layers: see test_compress for a real model


def test_centroid_fine_tuning_changes_the_codebook_but_keeps_the_clusters(trained):
    model, x, y = trained
    frozen = dc.WeightSharer(bits=2, fine_tune_epochs=0).fit(model, x, y)
    tuned = dc.WeightSharer(bits=2, fine_tune_epochs=3, learning_rate=0.01).fit(model, x, y)
    assert np.array_equal(frozen.codes_["hidden"][1], tuned.codes_["hidden"][1])
    assert not np.allclose(frozen.codes_["hidden"][0], tuned.codes_["hidden"][0])
    assert len(tuned.history_["loss"]) == 3


def test_shared_stage_needs_codes_and_a_foreign_file_is_refused(trained, tmp_path):
    model, _, _ = trained
    with pytest.raises(FlywheelError, match="codebook"):
        dc.write_compressed(model, str(tmp_path / "m.fwz"), stage="huffman")
    (tmp_path / "bad.fwz").write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(FlywheelError, match="not a .fwz"):
        dc.read_compressed(str(tmp_path / "bad.fwz"))


@pytest.mark.parametrize("huffman", [False, True])
def test_position_gaps_longer_than_the_gap_width_use_filler_symbols(huffman):
    mask = np.zeros(5000, dtype=bool)
    mask[[0, 3, 4, 1500, 4999]] = True  # gaps 0, 2, 0, 1495, 3498: far above any 1..8-bit width
    block = dc._positions_block(mask, huffman)
    positions, end = dc._read_positions(block, 0, huffman)
    assert end == len(block)
    assert np.array_equal(positions, np.flatnonzero(mask))


def test_global_scope_keeps_more_of_the_layer_with_larger_weights(trained):
    model, x, y = trained
    model.get_layer("out").kernel.assign(model.get_layer("out").kernel * 100.0)
    pruner = dc.MagnitudePruner(sparsity=0.5, scope="global", steps=2, fine_tune_epochs=0).fit(model, x, y)
    assert pruner.masks_["out"].mean() > pruner.masks_["hidden"].mean()
    assert pruner.sparsity_ == pytest.approx(0.5, abs=0.03)
