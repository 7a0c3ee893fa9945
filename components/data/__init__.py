"""What several components do with Examples, and the bundled demo sets.

* ``features``: how the technique components read Examples as features and write subsets;
* ``bundled``: the ``digits_examples`` and ``table_examples`` components (scikit-learn's sets as Examples);
* ``sanity``: the label gates of train and evaluate;
* ``resampling``: transform's class-imbalance resampling, which train reads back.

Nothing is imported here, so a component's code fingerprint covers only the modules it uses.
"""
