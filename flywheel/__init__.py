"""flywheel: ML pipelines that run on one machine and compile to Kubeflow Pipelines v2.

Importing flywheel is cheap: TensorFlow, Beam and kfp are imported only by the
components and commands that need them.
"""

from flywheel.dsl import *  # noqa: F401,F403 - the public DSL is flywheel's top-level API
from flywheel.dsl import __all__ as _dsl_all

__version__ = "0.1.0"
__all__ = ["__version__", *_dsl_all]
