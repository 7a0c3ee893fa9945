"""Stands in for TensorFlow in the warm-parent tests: slow to import, records where it was imported."""

import os
import time

IMPORTED_IN = os.getpid()
time.sleep(float(os.environ.get("TOY_PRELOAD_SECONDS", "0")))
