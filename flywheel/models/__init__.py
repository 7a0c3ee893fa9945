"""The models layer: what a flywheel Model artifact is, independent of any component.

* ``features``: the feature contract (``transform.json`` / ``model.json``) and the Model artifact's
  file layout: ``model.keras``, the SavedModel for serving, ``model.json``; one reader and writer.
* ``layers``: flywheel's Keras custom objects and ``load_model`` (``safe_mode=True``).
* ``images``: image preprocessing, the small CNN and the image serving signature.
* ``families``: the network families ``train`` builds (mlp, cnn, resnet, efficientnet_b0, vit).
* ``architectures``: architectures as data (NAS's search space, sampling, mutation, layer plan, cost) and their Keras builder.
* ``fit``: the one Keras fit loop (``train``, ``tune``'s trials and NAS candidates train through it).
* ``data``: the streaming tabular reader (Parquet shards -> a batched ``tf.data`` pipeline of raw features).

Components (train, evaluate, compress, ...), serving, monitoring and the techniques import these;
nothing here imports a component (``fit`` uses the techniques: co-teaching, distillation, mixing).
"""
