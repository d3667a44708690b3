"""``python -m resilient`` runs the ``resilient`` command."""

from ._cli import main

raise SystemExit(main())
