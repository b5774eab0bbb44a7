"""Allows `python -m storemon`."""

from storemon.cli import main

raise SystemExit(main())
