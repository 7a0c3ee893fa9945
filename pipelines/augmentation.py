"""Offline augmentation of a low-data digits train split: searched policy and GAN samples.

    flywheel run pipelines/augmentation.py
    flywheel run pipelines/augmentation.py -p per_class=10 -p n_candidates=32
    flywheel run pipelines/augmentation.py -p per_class=10 -p child_model=cnn

``search_augmentation`` searches a policy on a validation part of the train
split (a small random + evolutionary search, not AutoAugment's RL search) and
writes it as an AugmentationPolicy artifact; ``augment`` applies it offline;
a second ``augment`` adds conditional-GAN samples to the classes below
``target_per_class``. Train a model on either output.
"""

from flywheel import pipeline
from flywheel.components.data.bundled import digits_examples
from flywheel.components.augment import augment
from flywheel.components.search_augmentation import search_augmentation


@pipeline(name="augmentation")
def augmentation(
    n_copies: int = 4,
    seed: int = 0,
) -> None:
    """Searches and applies an augmentation policy, and GAN-augments, a digits split with 20 images per class.

    ``n_copies`` goes to the policy search and to the policy's augment (task
    ``augment``); ``seed`` to every task. The GAN's augment is task
    ``augment-2`` (``-p augment-2.gan_steps=500``); ``-p per_class=10`` is
    digits_examples'.
    """
    source = digits_examples(per_class=20, seed=seed)
    searched = search_augmentation(examples=source.outputs["examples"], n_copies=n_copies, seed=seed)
    augment(examples=source.outputs["examples"], policy=searched.outputs["policy"], method="policy", n_copies=n_copies, seed=seed)
    augment(examples=source.outputs["examples"], method="gan", target_per_class=60, seed=seed)
