"""Live state: a snapshot of every policy, a terminal view and a web dashboard.

* :func:`snapshot` (and ``registry.snapshot()``): every policy's state and
  statistics, with the busiest keys of keyed rate limiters, as versioned JSON
  data (``"version": 1``; the shape is documented with the dashboard).
* :class:`LiveStats`: a listener turning the policies' events into rolling rates
  (calls, failures, rejections by reason, retries per second).
* :class:`DashboardApp`: the web page, the JSON snapshot and the live stream
  (Server-Sent Events) as one ASGI app; ``ResilienceMiddleware(...,
  dashboard="/_resilient")`` mounts it in any ASGI app.
* ``resilient top FILE-or-URL`` and ``resilient dashboard FILE-or-URL`` on the
  command line.

Nothing here is imported by ``import resilient``; the page's files ship inside
the package and load nothing from the network.
"""

from __future__ import annotations

from ._app import Auth, DashboardApp, RemoteSnapshot
from ._live import LiveStats, StateChange
from ._snapshot import SNAPSHOT_FORMAT, SNAPSHOT_VERSION, snapshot

__all__ = [
    "Auth",
    "DashboardApp",
    "LiveStats",
    "RemoteSnapshot",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_VERSION",
    "snapshot",
    "StateChange",
]
