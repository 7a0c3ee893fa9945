"""TensorFlow components for the warm-parent test that runs real TensorFlow in forked workers."""

from __future__ import annotations

import os
import sys

from flywheel import Dataset, Output, component


def _sum_with_tf(out, values: list) -> None:
    warm = "tensorflow" in sys.modules  # before this component imports it
    import tensorflow as tf

    out.properties.update(
        {"sum": float(tf.reduce_sum(tf.constant(values, dtype=tf.float32)).numpy()), "pid": os.getpid(),
         "ppid": os.getppid(), "tf_was_imported": warm}
    )


@component
def tf_sum(out: Output[Dataset], values: list = [1.0, 2.0], after: str = "") -> None:  # noqa: B006
    """Sums ``values`` with a TensorFlow op."""
    _sum_with_tf(out, values)


@component(isolated=True)
def tf_sum_isolated(out: Output[Dataset], values: list = [3.0, 4.0]) -> None:  # noqa: B006
    """As ``tf_sum``; its worker exits afterwards."""
    _sum_with_tf(out, values)
