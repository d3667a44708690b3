"""The Redis stores' I/O: ``_async/`` is written by hand, ``_sync/`` generated from it."""
