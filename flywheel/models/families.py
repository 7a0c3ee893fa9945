"""Model families of ``train``: MLP, small CNN, ResNet-style, EfficientNet-B0, small ViT.

``train(architecture=...)`` picks one; ``resolve_family`` checks the name
against the Examples' modality and ``build_image_classifier`` builds an image
family. Every builder takes raw pixels (``image``), applies the fitted
``preprocess`` model first (frozen) and ends in a softmax named
``probabilities``, so saving, safe loading, the serving export, ``evaluate``
and ``push`` treat all families alike.

* ``mlp``: Flatten -> Dense head (tables: ``build_table_classifier``, raw feature columns).

``build_classifier`` builds what ``train`` fits (and ``tune``'s trials, so a trial trains what
``train`` will): the family for images, the dense table classifier for tables.
* ``cnn``: ``flywheel.models.images.build_cnn``.
* ``resnet``: a stem convolution, then one stage of residual blocks per width
  (He et al. 2016: Conv-BN-ReLU-Conv-BN plus an identity or 1x1 projection
  shortcut), stride 2 between stages while the map is at least 4 pixels.
* ``efficientnet_b0``: ``keras.applications.EfficientNetB0(weights=None)``
  (nothing is downloaded). Inputs smaller than 32x32 are resized inside the
  model and one channel is repeated to three, so serving still takes the raw
  pixels. Keras' EfficientNet divides by 255 in its own stem whatever the
  input, so a ``Rescaling(255)`` hands it [0, 255] pixels and the pixels are
  scaled exactly once (by ``preprocess``).
* ``vit``: a small Vision Transformer (Dosovitskiy et al. 2021): a strided
  Conv2D patch embedding, a learned position embedding (an ``Embedding`` over
  token positions), pre-norm encoder blocks (LayerNormalization,
  MultiHeadAttention, GELU MLP, residuals), global average pooling over
  tokens instead of a class token (as in Beyer et al. 2022's plain ViT), head.

Only built-in Keras layers and ``keras.ops`` nodes are used (no Lambda, no
custom class), so ``flywheel.models.layers.load_model`` loads every family with
``safe_mode=True``.
"""

from __future__ import annotations

from typing import Any, Sequence

from flywheel.errors import FlywheelError, ParameterError

from flywheel.models import features
from flywheel.models import images as image_models

TABLE_FAMILIES = ("mlp",)
IMAGE_FAMILIES = ("mlp", "cnn", "resnet", "efficientnet_b0", "vit")
ARCHITECTURES = ("auto", "mlp", "cnn", "resnet", "efficientnet_b0", "vit")
EFFICIENTNET_MIN_SIZE = 32  # keras.applications' smallest EfficientNet input side
# BatchNorm moving averages: Keras' 0.99 needs ~500 steps to forget its initial values; a few epochs on small
# data (1.4k digits, ~45 steps an epoch) are fewer, so evaluation would use stale statistics.
BN_MOMENTUM = 0.9
VIT_TOKENS_PER_SIDE = 4  # patch size = shorter side // 4: 16 tokens for 8x8 (2x2 patches) or 32x32 (8x8 patches)


def resolve_family(architecture: str, image: bool) -> str:
    """The family to build: ``"auto"`` becomes ``"cnn"`` for images and ``"mlp"`` for tables.

    Raises:
        ParameterError: the name is unknown, or the family does not fit the
            Examples' modality (only ``mlp`` fits tables).
    """
    if architecture not in ARCHITECTURES:
        raise ParameterError(
            f"The 'architecture' parameter of train must be one of {ARCHITECTURES} "
            f"(tables: {TABLE_FAMILIES}; images: {IMAGE_FAMILIES}). Got {architecture!r} instead."
        )
    if architecture == "auto":
        return "cnn" if image else "mlp"
    if not image and architecture not in TABLE_FAMILIES:
        raise ParameterError(
            f"The 'architecture' parameter of train must be one of {('auto', *TABLE_FAMILIES)} for tabular "
            f"Examples ({IMAGE_FAMILIES[1:]} take images). Got {architecture!r} for tabular data instead; "
            "use architecture='mlp' or train on image Examples."
        )
    return architecture


def build_image_classifier(
    family: str,
    input_shape: Sequence[int],
    n_classes: int,
    *,
    widths: Sequence[int] = (16, 32),
    dense_units: Sequence[int] = (64,),
    dropout: float = 0.25,
    preprocess: Any = None,
) -> Any:
    """Builds an image family by name (see the module docstring).

    Args:
        family: One of ``IMAGE_FAMILIES``.
        input_shape: (height, width, channels) of the raw images.
        n_classes: Output classes.
        widths: ``cnn``: Conv2D filters per block; ``resnet``: filters per
            stage; ``vit``: ``len(widths)`` encoder blocks of width
            ``widths[-1]``; ignored by ``mlp`` and ``efficientnet_b0``.
        dense_units: Hidden Dense layers of the head (ReLU), every family.
        dropout: Dropout before each head layer (ViT: also in attention/MLP).
        preprocess: Optional Keras model applied first (frozen).

    Raises:
        ParameterError: ``family`` is not an image family.
        FlywheelError: the shape or sizes do not fit the family.
    """
    common = {"dense_units": dense_units, "dropout": dropout, "preprocess": preprocess}
    if family == "cnn":
        return image_models.build_cnn(input_shape, n_classes, widths=widths, **common)
    if family == "mlp":
        return build_image_mlp(input_shape, n_classes, **common)
    if family == "resnet":
        return build_resnet(input_shape, n_classes, widths=widths, **common)
    if family == "efficientnet_b0":
        return build_efficientnet_b0(input_shape, n_classes, **common)
    if family == "vit":
        return build_vit(input_shape, n_classes, width=int(widths[-1]), depth=len(widths), **common)
    raise ParameterError(
        f"The 'family' parameter of build_image_classifier must be one of {IMAGE_FAMILIES}. Got {family!r} instead."
    )


def _check_shape(builder: str, input_shape: Sequence[int], n_classes: int) -> tuple[int, int, int]:
    if len(input_shape) != 3 or min(input_shape) < 1 or n_classes < 2:
        raise FlywheelError(
            f"{builder} needs input_shape (height, width, channels) of positive sizes and n_classes >= 2; "
            f"got input_shape={tuple(input_shape)}, n_classes={n_classes}."
        )
    return int(input_shape[0]), int(input_shape[1]), int(input_shape[2])


def _stem(input_shape: Sequence[int], preprocess: Any) -> tuple[Any, Any]:
    """(raw pixel input, preprocessed tensor)."""
    import keras

    pixels = keras.Input(shape=tuple(int(v) for v in input_shape), dtype="float32", name=image_models.IMAGE_INPUT)
    x = pixels
    if preprocess is not None:
        preprocess.trainable = False
        x = preprocess(x)
    return pixels, x


def _head(x: Any, n_classes: int, dense_units: Sequence[int], dropout: float) -> Any:
    """Dropout + Dense(ReLU) per hidden size, then the softmax ``probabilities``."""
    import keras

    for i, units in enumerate(dense_units):
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"head_dropout_{i}")(x)
        x = keras.layers.Dense(int(units), activation="relu", name=f"head_dense_{i}")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="head_dropout_out")(x)
    return keras.layers.Dense(n_classes, activation="softmax", name=image_models.OUTPUT_NAME)(x)


def build_image_mlp(
    input_shape: Sequence[int], n_classes: int, *, dense_units: Sequence[int] = (64,), dropout: float = 0.25,
    preprocess: Any = None,
) -> Any:
    """Flattened pixels -> Dense head -> softmax: the no-convolution baseline."""
    import keras

    _check_shape("build_image_mlp", input_shape, n_classes)
    pixels, x = _stem(input_shape, preprocess)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(pixels, _head(x, n_classes, dense_units, dropout), name="mlp")


def build_resnet(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    widths: Sequence[int] = (16, 32),
    blocks_per_stage: int = 1,
    dense_units: Sequence[int] = (),
    dropout: float = 0.25,
    preprocess: Any = None,
) -> Any:
    """A small ResNet: stem Conv-BN-ReLU, ``blocks_per_stage`` residual blocks per width, GAP, head.

    Raises:
        FlywheelError: bad shape, empty/non-positive widths or blocks_per_stage < 1.
    """
    import keras

    height, width, _ = _check_shape("build_resnet", input_shape, n_classes)
    if not widths or min(int(w) for w in widths) < 1 or blocks_per_stage < 1:
        raise FlywheelError(
            f"build_resnet needs positive widths and blocks_per_stage >= 1; got widths={tuple(widths)}, "
            f"blocks_per_stage={blocks_per_stage}."
        )
    layers = keras.layers
    pixels, x = _stem(input_shape, preprocess)
    x = layers.Conv2D(int(widths[0]), 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x))
    size = min(height, width)
    for stage, filters in enumerate(int(w) for w in widths):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 and size >= 4 else 1
            size //= stride
            x = _residual_block(x, filters, stride, name=f"res{stage}_{block}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(pixels, _head(x, n_classes, dense_units, dropout), name="resnet")


def _residual_block(x: Any, filters: int, stride: int, *, name: str) -> Any:
    import keras

    layers = keras.layers
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.ReLU(name=f"{name}_relu1")(layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(y))
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(y)
    shortcut = x
    if stride != 1 or int(x.shape[-1]) != filters:
        # A strided 1x1 convolution, written as 1x1 subsampling + Dense over channels (the same map) so the
        # main path's conv stays the model's last Conv2D: Grad-CAM weights the last one.
        if stride != 1:
            x = layers.MaxPooling2D(1, strides=stride, name=f"{name}_subsample")(x)
        shortcut = layers.Dense(filters, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def build_efficientnet_b0(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    dense_units: Sequence[int] = (),
    dropout: float = 0.2,
    preprocess: Any = None,
) -> Any:
    """EfficientNet-B0 from scratch (``weights=None``) on raw pixels of any size and 1 or 3 channels.

    Raises:
        FlywheelError: bad shape, or a channel count other than 1 or 3.
    """
    import keras

    height, width, channels = _check_shape("build_efficientnet_b0", input_shape, n_classes)
    if channels not in (1, 3):
        raise FlywheelError(
            f"build_efficientnet_b0 needs images of 1 (repeated to RGB) or 3 channels; got {channels} channels."
        )
    layers = keras.layers
    pixels, x = _stem(input_shape, preprocess)
    if height < EFFICIENTNET_MIN_SIZE or width < EFFICIENTNET_MIN_SIZE:
        x = layers.Resizing(
            max(height, EFFICIENTNET_MIN_SIZE), max(width, EFFICIENTNET_MIN_SIZE), interpolation="bilinear",
            name="resize",
        )(x)
    if channels == 1:
        x = layers.Concatenate(axis=-1, name="gray_to_rgb")([x, x, x])
    # EfficientNet's stem applies Rescaling(1/255) unconditionally: undo it, preprocess already scaled.
    x = layers.Rescaling(255.0, name="undo_stem_rescaling")(x)
    backbone = keras.applications.EfficientNetB0(include_top=False, weights=None, input_tensor=x, pooling="avg")
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return keras.Model(pixels, _head(backbone.output, n_classes, dense_units, dropout), name="efficientnet_b0")


def build_vit(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    width: int = 32,
    depth: int = 2,
    heads: int = 4,
    patch_size: int | None = None,
    dense_units: Sequence[int] = (),
    dropout: float = 0.1,
    preprocess: Any = None,
) -> Any:
    """A small Vision Transformer on raw pixels.

    Args:
        input_shape: (height, width, channels) of the raw images.
        n_classes: Output classes.
        width: Token embedding size.
        depth: Encoder blocks.
        heads: Attention heads (key size ``width // heads``, at least 1).
        patch_size: Side of the square patches; None: shorter side // 4
            (16 tokens). Pixels past the last whole patch are dropped.
        dense_units: Hidden Dense layers of the head.
        dropout: Dropout in attention, the encoder MLPs and the head.
        preprocess: Optional Keras model applied first (frozen).

    Raises:
        FlywheelError: bad shape or sizes, or a patch larger than the image.
    """
    import keras
    from keras import ops

    height, img_width, _ = _check_shape("build_vit", input_shape, n_classes)
    patch = int(patch_size) if patch_size is not None else max(1, min(height, img_width) // VIT_TOKENS_PER_SIDE)
    if width < 1 or depth < 1 or heads < 1 or not 1 <= patch <= min(height, img_width):
        raise FlywheelError(
            f"build_vit needs width, depth, heads >= 1 and 1 <= patch_size <= {min(height, img_width)} (the "
            f"shorter image side); got width={width}, depth={depth}, heads={heads}, patch_size={patch}."
        )
    layers = keras.layers
    tokens = (height // patch) * (img_width // patch)
    pixels, x = _stem(input_shape, preprocess)
    x = layers.Conv2D(width, patch, strides=patch, padding="valid", name="patch_embedding")(x)
    x = layers.Reshape((tokens, width), name="tokens")(x)
    # Token positions 0..tokens-1 per row, from the tokens themselves: keras.ops nodes serialize, a constant would not.
    positions = ops.cumsum(ops.ones_like(x[:, :, 0], dtype="int32"), axis=1) - 1
    x = layers.Add(name="add_position")([x, layers.Embedding(tokens, width, name="position_embedding")(positions)])
    for i in range(depth):
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1")(x)
        h = layers.MultiHeadAttention(
            num_heads=heads, key_dim=max(1, width // heads), dropout=dropout, name=f"block{i}_attention"
        )(h, h)
        x = layers.Add(name=f"block{i}_add1")([x, h])
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2")(x)
        h = layers.Dense(2 * width, activation="gelu", name=f"block{i}_mlp1")(h)
        if dropout > 0:
            h = layers.Dropout(dropout, name=f"block{i}_mlp_dropout")(h)
        h = layers.Dense(width, name=f"block{i}_mlp2")(h)
        x = layers.Add(name=f"block{i}_add2")([x, h])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(pixels, _head(x, n_classes, dense_units, dropout), name="vit")


def build_classifier(
    spec: dict[str, Any], preprocess: Any, *, architecture: str, hidden_units: Sequence[int], conv_widths: Sequence[int],
    dropout: float,
) -> Any:
    """The untrained network ``train`` fits: the ``architecture`` family for images, the dense model for tables."""
    image = image_models.is_image_spec(spec)
    family = resolve_family(architecture, image)
    n_classes = len(spec["label_vocabulary"])
    if image:
        return build_image_classifier(
            family, spec["image_shape"], n_classes, widths=[int(w) for w in conv_widths],
            dense_units=[int(u) for u in hidden_units], dropout=dropout, preprocess=preprocess,
        )
    return build_table_classifier(
        spec, preprocess, hidden_units=[int(u) for u in hidden_units], dropout=dropout, n_classes=n_classes
    )


def build_table_classifier(
    spec: dict[str, Any], preprocess: Any, *, hidden_units: Sequence[int], dropout: float, n_classes: int
) -> Any:
    """Raw feature inputs -> the fitted preprocessing (frozen) -> Dense layers (ReLU) -> softmax over classes."""
    import keras

    preprocess.trainable = False
    inputs = {
        name: keras.Input(shape=(), dtype=spec["features"][name]["dtype"], name=name)
        for name in features.feature_names(spec)
    }
    x = preprocess(inputs)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    output = keras.layers.Dense(n_classes, activation="softmax", name=image_models.OUTPUT_NAME)(x)
    return keras.Model(inputs=inputs, outputs=output, name="classifier")
