"""``python -m rmtlib``: the command line of :mod:`rmtlib.cli`."""

from .cli import main

raise SystemExit(main())
