"""python -m flywheel: the same as the flywheel command."""

import sys

from flywheel.cli.main import main

sys.exit(main())
