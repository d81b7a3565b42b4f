"""``python -m rmtlib.benchmarks``: run every benchmark (see :mod:`rmtlib.benchmarks`)."""

import sys

from . import main

sys.exit(main())
