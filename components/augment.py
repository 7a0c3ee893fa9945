"""augment: offline augmentation of the train split of image Examples.

``method="gan"`` (or ``"diffusion"``) trains a class-conditional GAN (or
denoising diffusion model) on the train split and adds generated images to the
classes below ``target_per_class`` (the low-data classes); ``method="policy"`` adds ``n_copies`` copies of the train split
transformed by a searched policy (an ``AugmentationPolicy`` from
``search_augmentation``). Generated rows get ``synthetic = True`` and
``example_id`` -1; other splits are copied unchanged.
"""

from __future__ import annotations

from typing import Annotated

from flywheel.dsl.artifacts import Examples
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Options
from flywheel.errors import FlywheelError, ParameterError

from flywheel.components.data import features as data
from flywheel.components import examples_io
from flywheel.components.search_augmentation import AugmentationPolicy, image_split, read_policy

GENERATORS = ("gan", "diffusion")
METHODS = (*GENERATORS, "policy")


@component
def augment(
    examples: Input[Examples],
    augmented: Output[Examples],
    policy: Input[AugmentationPolicy] = None,
    method: Annotated[str, Options(METHODS)] = "gan",
    target_per_class: int = 100,
    n_copies: int = 4,
    gan_steps: int = 3000,
    diffusion_epochs: int = 10,
    seed: int = 0,
) -> None:
    """Adds synthetic train images (GAN or diffusion samples, or policy-augmented copies).

    Args:
        examples: Image Examples with a labelled ``train`` split.
        augmented: Receives the Examples with the grown train split.
        policy: The searched policy (``method="policy"`` only).
        method: "gan", "diffusion" or "policy".
        target_per_class: GAN/diffusion: generate until every class has this many train images.
        n_copies: Policy: augmented copies of the train split to add.
        gan_steps: GAN training steps.
        diffusion_epochs: Diffusion training epochs (100 steps each; a progress line each).
        seed: Seeds the generator and the augmentation draws.

    Raises:
        ParameterError: unknown method, or "policy" without a policy input.
        FlywheelError: not image Examples.
    """
    import numpy as np
    import pandas as pd

    if method == "policy" and policy is None:
        raise ParameterError("augment with method='policy' needs the 'policy' input (the output of search_augmentation).")
    images, y, frame, classes = image_split(examples, "train")
    label = examples_io.label_of(examples)
    original, _ = examples_io.read_images(examples, "train")
    if method in GENERATORS:
        counts = np.bincount(y, minlength=len(classes))
        wanted = {c: int(target_per_class - n) for c, n in enumerate(counts) if n < target_per_class}
        generator = _generator(method, gan_steps, diffusion_epochs, seed).fit(images, y)
        new_images, new_y = generator.sample(wanted) if wanted else (images[:0], y[:0])
    else:
        from flywheel.techniques.autoaugment import augmented_training_set, policy_from_json

        rules = policy_from_json(read_policy(policy))
        grown, grown_y = augmented_training_set(images, y, rules, n_copies, seed)
        new_images, new_y = grown[len(images):], grown_y[len(images):]
    if original.dtype == np.uint8:
        new_images = np.round(np.asarray(new_images) * 255.0).astype(np.uint8)
    elif not np.issubdtype(original.dtype, np.floating):
        raise FlywheelError(f"augment handles uint8 or float images; got {original.dtype}.")
    else:
        new_images = (np.asarray(new_images) * max(float(original.max()), 1.0)).astype(original.dtype)
    extra = pd.DataFrame({data.ID_COLUMN: np.full(len(new_y), -1, dtype=np.int64), label: [classes[i] for i in new_y]})
    rows = pd.concat([frame.assign(synthetic=False), extra.assign(synthetic=True)], ignore_index=True)
    rows = rows[[c for c in rows.columns if c in frame.columns or c == "synthetic"]]
    data.write_like(examples, augmented, "train", rows, np.concatenate([original, new_images]))
    for other in examples_io.split_names(examples):
        if other != "train":
            other_images, other_frame = examples_io.read_images(examples, other)
            data.write_like(examples, augmented, other, other_frame, other_images)
    augmented.properties.update({"augmentation": method, "synthetic_rows": int(len(new_y))})


def _generator(method: str, gan_steps: int, diffusion_epochs: int, seed: int):
    """The unfitted class-conditional generator named by ``method`` (one of GENERATORS)."""
    if method == "gan":
        from flywheel.techniques.gan import ConditionalGAN

        return ConditionalGAN(steps=gan_steps, random_state=seed)
    from flywheel.techniques.diffusion import ConditionalDiffusion

    return ConditionalDiffusion(epochs=diffusion_epochs, verbose=True, random_state=seed)
