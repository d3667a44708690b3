# GENERATED from _async/__init__.py by scripts/unasync.py -- do not edit.
"""The Redis stores' I/O: ``_async/`` is written by hand, ``_sync/`` generated from it."""
