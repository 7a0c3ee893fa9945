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
    per_class: int = 20,
    n_candidates: int = 16,
    n_mutations: int = 8,
    n_copies: int = 4,
    target_per_class: int = 60,
    gan_steps: int = 3000,
    child_model: str = "logreg",
    seed: int = 0,
) -> None:
    """Searches and applies an augmentation policy, and GAN-augments, a digits split with per_class images per class."""
    source = digits_examples(per_class=per_class, seed=seed)
    searched = search_augmentation(
        examples=source.outputs["examples"], n_candidates=n_candidates, n_mutations=n_mutations, n_copies=n_copies,
        child_model=child_model, seed=seed,
    )
    augment(examples=source.outputs["examples"], policy=searched.outputs["policy"], method="policy", n_copies=n_copies, seed=seed)
    augment(examples=source.outputs["examples"], method="gan", target_per_class=target_per_class, gan_steps=gan_steps, seed=seed)
