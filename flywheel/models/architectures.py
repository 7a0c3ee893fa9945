"""Network architectures as data: the search space, sampling and mutation, the layer plan, its cost and its Keras model.

An *architecture* is plain JSON data, so it can be declared in a pipeline file, recorded in
lineage and rebuilt later::

    {"kind": "cnn", "stages": [[16, 16], [32]], "kernel_size": 3, "skip": true,
     "dense_units": [32], "resolution": 8}
    {"kind": "mlp", "units": [64, 64], "skip": false, "resolution": 8}

A CNN stage is a list of Conv2D widths (one per layer, ``same`` padding, ReLU) followed by a 2x2
max-pool while the map is at least 4 pixels wide (the rule of ``flywheel.models.images.build_cnn``).
``skip`` adds a residual connection around every layer whose input already has its output's shape
(layers after the first in a stage; MLP layers of the same width as the one before). ``resolution``
resizes the input inside the model (a Keras ``Resizing`` layer), so serving still takes raw pixels.
The *search space* is a dict of choices (see ``DEFAULT_SPACE``).

``layer_plan`` turns an architecture into a list of layers with their shapes; ``network_cost``
counts parameters and FLOPs analytically from that plan (FLOPs = 2 x multiply-adds of the Conv2D
and Dense layers; pooling, adds, ReLU and resizing are not counted), and ``build_network`` builds
the same plan in Keras, so the count and the model cannot drift apart.

The models layer owns these builders (issue 16); ``flywheel.techniques.nas`` searches over them
(``ArchitectureSearch``) and ``flywheel.techniques.scaling`` scales them.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np

from flywheel.errors import FlywheelError, ParameterError

DEFAULT_SPACE: dict[str, list[Any]] = {
    "kinds": ["cnn", "mlp"],
    "stages": [1, 2],  # CNN conv stages
    "layers_per_stage": [1, 2],  # CNN conv layers in a stage
    "widths": [8, 16, 32],  # CNN filters, chosen per layer
    "kernel_sizes": [3, 5],
    "skip": [False, True],
    "dense_units": [0, 32, 64],  # CNN head: 0 = softmax right after the convolutions
    "mlp_layers": [1, 2, 3],
    "mlp_units": [32, 64, 128],  # MLP width, chosen per layer
}
SPACE_KEYS = tuple(DEFAULT_SPACE)


def check_space(space: Any, owner: str = "ArchitectureSearch") -> dict[str, list[Any]]:
    """A search space with every key of ``DEFAULT_SPACE`` as a non-empty list of valid choices.

    Missing keys take ``DEFAULT_SPACE``'s choices.

    Raises:
        ParameterError: a key is unknown or a choice list is empty or invalid.
    """
    if not isinstance(space, dict):
        raise ParameterError(f"The 'search_space' parameter of {owner} must be a dict of choice lists. Got {space!r} instead.")
    unknown = sorted(set(space) - set(SPACE_KEYS))
    if unknown:
        raise ParameterError(
            f"The 'search_space' parameter of {owner} must only use the keys {', '.join(SPACE_KEYS)}. "
            f"Got unknown keys {unknown} instead."
        )
    merged = {**DEFAULT_SPACE, **space}
    for key, choices in merged.items():
        if not isinstance(choices, list) or not choices:
            raise ParameterError(
                f"The 'search_space' parameter of {owner} must give '{key}' as a non-empty list. Got {choices!r} instead."
            )
        if key == "kinds":
            ok = all(c in ("cnn", "mlp") for c in choices)
        elif key == "skip":
            ok = all(isinstance(c, bool) for c in choices)
        elif key == "kernel_sizes":
            ok = all(_is_int(c) and c >= 1 and c % 2 == 1 for c in choices)
        elif key == "dense_units":
            ok = all(_is_int(c) and c >= 0 for c in choices)
        else:
            ok = all(_is_int(c) and c >= 1 for c in choices)
        if not ok:
            raise ParameterError(
                f"The 'search_space' parameter of {owner} must give valid '{key}' choices (kinds: 'cnn'/'mlp'; skip: "
                f"bools; kernel_sizes: odd ints >= 1; dense_units: ints >= 0; others: ints >= 1). Got {choices!r} instead."
            )
    return merged


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def sample_architecture(space: dict[str, list[Any]], rng: np.random.Generator) -> dict[str, Any]:
    """A random architecture of the space (uniform over each choice)."""

    def pick(key: str) -> Any:
        return space[key][int(rng.integers(len(space[key])))]

    kind = pick("kinds")
    if kind == "cnn":
        stages = [[int(pick("widths")) for _ in range(int(pick("layers_per_stage")))] for _ in range(int(pick("stages")))]
        dense = int(pick("dense_units"))
        return {
            "kind": "cnn", "stages": stages, "kernel_size": int(pick("kernel_sizes")),
            "skip": bool(pick("skip")), "dense_units": [dense] if dense else [],
        }
    return {"kind": "mlp", "units": [int(pick("mlp_units")) for _ in range(int(pick("mlp_layers")))], "skip": bool(pick("skip"))}


def mutate_architecture(arch: dict[str, Any], space: dict[str, list[Any]], rng: np.random.Generator) -> dict[str, Any]:
    """A copy of ``arch`` with one random change that stays inside the space.

    CNN changes: one layer's width, a layer added to or removed from a stage,
    a stage added or removed, the kernel size, skip on/off, the dense head.
    MLP changes: one layer's width, a layer added or removed, skip on/off.
    A change that has no effect in the space (one choice only) is replaced by
    a fresh sample of the space, so a mutation never returns its parent.
    """
    child = copy.deepcopy(arch)

    def other(key: str, current: Any) -> Any:
        options = [c for c in space[key] if c != current]
        return options[int(rng.integers(len(options)))] if options else None

    moves: list[Any] = []
    if arch["kind"] == "cnn":
        stages = child["stages"]
        layers = [(s, i) for s, stage in enumerate(stages) for i in range(len(stage))]

        def width() -> bool:
            s, i = layers[int(rng.integers(len(layers)))]
            new = other("widths", stages[s][i])
            if new is None:
                return False
            stages[s][i] = int(new)
            return True

        def layer_count() -> bool:
            s = int(rng.integers(len(stages)))
            grow = [n for n in space["layers_per_stage"] if n != len(stages[s])]
            if not grow:
                return False
            target = int(grow[int(rng.integers(len(grow)))])
            while len(stages[s]) < target:
                stages[s].append(stages[s][-1])
            del stages[s][target:]
            return True

        def stage_count() -> bool:
            target = other("stages", len(stages))
            if target is None:
                return False
            while len(stages) < target:
                stages.append([int(space["widths"][int(rng.integers(len(space["widths"])))])] * int(space["layers_per_stage"][0]))
            del stages[int(target):]
            return True

        def kernel() -> bool:
            new = other("kernel_sizes", child["kernel_size"])
            child["kernel_size"] = int(new) if new is not None else child["kernel_size"]
            return new is not None

        def head() -> bool:
            new = other("dense_units", child["dense_units"][0] if child["dense_units"] else 0)
            if new is None:
                return False
            child["dense_units"] = [int(new)] if new else []
            return True

        moves = [width, layer_count, stage_count, kernel, head]
    else:
        units = child["units"]

        def width() -> bool:
            i = int(rng.integers(len(units)))
            new = other("mlp_units", units[i])
            if new is None:
                return False
            units[i] = int(new)
            return True

        def layer_count() -> bool:
            target = other("mlp_layers", len(units))
            if target is None:
                return False
            while len(units) < target:
                units.append(units[-1])
            del units[int(target):]
            return True

        moves = [width, layer_count]

    def skip() -> bool:
        if len(space["skip"]) < 2 or not _skip_applies(child):
            return False  # toggling a skip that no layer can take would rebuild the parent's network
        child["skip"] = not child["skip"]
        return True

    moves.append(skip)
    for index in rng.permutation(len(moves)):
        if moves[int(index)]():
            return child
    return sample_architecture(space, rng)


def _skip_applies(arch: dict[str, Any]) -> bool:
    """Whether some layer follows one of its own width (where ``skip`` adds a residual connection)."""
    runs = arch["stages"] if arch["kind"] == "cnn" else [arch["units"]]
    return any(run[i] == run[i - 1] for run in runs for i in range(1, len(run)))


def layer_plan(arch: dict[str, Any], input_shape: Sequence[int], n_classes: int) -> list[dict[str, Any]]:
    """The layers of an architecture with their shapes (what both counting and building use).

    Ops: ``resize`` (to ``height`` x ``width``), ``conv`` (``kernel``, ``in``,
    ``out``, output ``height``/``width``, ``skip``), ``pool``, ``flatten``
    (``out`` features), ``dense`` (``in``, ``out``, ``skip``, ``softmax``).

    Raises:
        FlywheelError: the architecture or input shape is malformed.
    """
    if len(input_shape) != 3 or min(input_shape) < 1 or n_classes < 2:
        raise FlywheelError(
            f"An architecture needs an input shape (height, width, channels) and >= 2 classes; "
            f"got {tuple(input_shape)} and {n_classes}."
        )
    kind = arch.get("kind") if isinstance(arch, dict) else None
    if kind not in ("cnn", "mlp"):
        raise FlywheelError(f"An architecture is a dict with kind 'cnn' or 'mlp'; got {arch!r}.")
    h, w, channels = (int(v) for v in input_shape)
    plan: list[dict[str, Any]] = []
    resolution = arch.get("resolution")
    if resolution and (int(resolution) != h or int(resolution) != w):
        h = w = int(resolution)
        plan.append({"op": "resize", "height": h, "width": w})
    skip = bool(arch.get("skip", False))
    if kind == "cnn":
        stages = arch.get("stages") or []
        if not stages or not all(stage for stage in stages):
            raise FlywheelError(f"A CNN architecture needs non-empty 'stages' (lists of widths); got {stages!r}.")
        kernel = int(arch.get("kernel_size", 3))
        for stage in stages:
            for width in stage:
                plan.append(
                    {"op": "conv", "kernel": kernel, "in": channels, "out": int(width), "height": h, "width": w,
                     "skip": skip and channels == int(width) and plan[-1]["op"] == "conv"}
                )
                channels = int(width)
            if min(h, w) >= 4:
                h, w = h // 2, w // 2
                plan.append({"op": "pool", "height": h, "width": w})
        features = h * w * channels
        hidden = [int(u) for u in arch.get("dense_units", [])]
    else:
        features = h * w * channels
        hidden = [int(u) for u in arch.get("units", [])]
        if not hidden:
            raise FlywheelError(f"An MLP architecture needs non-empty 'units'; got {arch!r}.")
    plan.append({"op": "flatten", "out": features})
    for i, units in enumerate(hidden):
        plan.append({"op": "dense", "in": features, "out": units, "skip": skip and kind == "mlp" and i > 0 and features == units})
        features = units
    plan.append({"op": "dense", "in": features, "out": int(n_classes), "skip": False, "softmax": True})
    return plan


def network_cost(plan: list[dict[str, Any]]) -> tuple[int, int]:
    """(trainable parameters, FLOPs per image) of a ``layer_plan``.

    FLOPs are 2 x multiply-adds of Conv2D (``2*H*W*k*k*C_in*C_out``) and Dense
    (``2*in*out``) layers; biases, activations, pooling, residual adds and
    resizing are not counted.
    """
    params = flops = 0
    for layer in plan:
        if layer["op"] == "conv":
            k, cin, cout = layer["kernel"], layer["in"], layer["out"]
            params += k * k * cin * cout + cout
            flops += 2 * layer["height"] * layer["width"] * k * k * cin * cout
        elif layer["op"] == "dense":
            params += layer["in"] * layer["out"] + layer["out"]
            flops += 2 * layer["in"] * layer["out"]
    return int(params), int(flops)


def architecture_cost(arch: dict[str, Any], input_shape: Sequence[int], n_classes: int) -> tuple[int, int]:
    """(trainable parameters, FLOPs per image) of an architecture; see ``network_cost``."""
    return network_cost(layer_plan(arch, input_shape, n_classes))


def describe(arch: dict[str, Any]) -> str:
    """A short one-line name, e.g. ``cnn k3 [16,16|32] skip head[32] r8``."""
    res = f" r{arch['resolution']}" if arch.get("resolution") else ""
    skip = " skip" if arch.get("skip") else ""
    if arch["kind"] == "cnn":
        stages = "|".join(",".join(str(w) for w in stage) for stage in arch["stages"])
        head = f" head{list(arch.get('dense_units', []))}" if arch.get("dense_units") else ""
        return f"cnn k{arch['kernel_size']} [{stages}]{skip}{head}{res}"
    return f"mlp {list(arch['units'])}{skip}{res}"


def build_network(
    arch: dict[str, Any],
    input_shape: Sequence[int],
    n_classes: int,
    *,
    preprocess: Any = None,
    input_name: str = "image",
    name: str = "searched",
) -> Any:
    """The Keras model of an architecture (softmax output named ``probabilities``).

    Only built-in Keras layers, so the saved model loads with ``safe_mode=True``.
    ``preprocess`` (a Keras model, e.g. the transform's pixel scaling) is applied
    first and frozen.

    Raises:
        FlywheelError: the architecture is malformed.
    """
    import keras

    plan = layer_plan(arch, input_shape, n_classes)
    pixels = keras.Input(shape=tuple(int(v) for v in input_shape), dtype="float32", name=input_name)
    x = pixels
    if preprocess is not None:
        preprocess.trainable = False
        x = preprocess(x)
    convs = denses = pools = 0
    for layer in plan:
        if layer["op"] == "resize":
            x = keras.layers.Resizing(layer["height"], layer["width"], interpolation="bilinear", name="resize")(x)
        elif layer["op"] == "conv":
            y = keras.layers.Conv2D(layer["out"], layer["kernel"], padding="same", activation="relu", name=f"conv_{convs}")(x)
            x = keras.layers.Add(name=f"skip_conv_{convs}")([x, y]) if layer["skip"] else y
            convs += 1
        elif layer["op"] == "pool":
            x = keras.layers.MaxPooling2D(2, name=f"pool_{pools}")(x)
            pools += 1
        elif layer["op"] == "flatten":
            x = keras.layers.Flatten(name="flatten")(x)
        elif layer.get("softmax"):
            x = keras.layers.Dense(layer["out"], activation="softmax", name="probabilities")(x)
        else:
            y = keras.layers.Dense(layer["out"], activation="relu", name=f"dense_{denses}")(x)
            x = keras.layers.Add(name=f"skip_dense_{denses}")([x, y]) if layer["skip"] else y
            denses += 1
    return keras.Model(inputs=pixels, outputs=x, name=name)
