"""Bridges from the Python peers, for code moving to resilient one piece at a time.

* :mod:`resilient.compat.tenacity`: tenacity ``stop_*``, ``wait_*`` and ``retry_*``
  strategies drive a :class:`resilient.Retry`.
* :mod:`resilient.compat.pybreaker`: an existing ``pybreaker.CircuitBreaker`` runs
  as a resilient policy (sync and async), or is replaced by an equivalent
  :class:`resilient.CircuitBreaker`.

Import the submodule you need; this package imports neither peer.
"""
