"""Resilient outbound HTTP for ``httpx``: one transport, sync and async.

::

    import httpx
    import resilient as rs
    from resilient.adapters.httpx import ResilientTransport

    transport = ResilientTransport(
        rs.Retry(3, deadline=10.0),
        rs.CircuitBreaker(name="api", minimum_calls=10),
        rs.Timeout(2.0),                                  # per attempt
    )
    with httpx.Client(transport=transport, base_url="https://api.example.com") as client:
        client.get("/users/42")

:class:`ResilientTransport` (``httpx.Client``) and
:class:`AsyncResilientTransport` (``httpx.AsyncClient``) wrap any inner
transport (default ``httpx.HTTPTransport()`` / ``AsyncHTTPTransport()``) and send
each request through policies, outermost first, exactly as a
:class:`~resilient.Pipeline` would. One core decides everything for both; the
two drivers only send, read, close and sleep.

**How HTTP outcomes meet the policies.** Inside the pipeline, a response whose
status counts as a failure (``failure_statuses``, 5xx by default) is raised as
:class:`FailedResponseError` (an ``httpx.HTTPStatusError`` carrying the
response and the server's ``retry_after`` hint), so a circuit breaker, a
fallback or a bulkhead sees it exactly like a transport error. Around each
:class:`~resilient.Retry` the transport turns it back into the response: the
retry decides on the response itself, closes it before sleeping, and when the
tries run out hands the *last real response* back. At the top the caller always
gets an ``httpx.Response`` (or the last transport error, or the library's
rejection such as :class:`~resilient.CircuitOpenError`), never the internal
exception.

**What is retried.** Each ``Retry`` given to the transport (directly or in a
pipeline or registry entry) is replaced by an HTTP-aware copy that keeps its
attempts, backoff, deadline, caps, clock, name and listeners, and decides *what*
to retry from the request:

* methods in ``retry_methods`` (the idempotent ones by default: GET HEAD PUT
  DELETE OPTIONS TRACE) are retried on ``retry_statuses`` (429 502 503 504) and
  ``retry_errors`` (connect, read and write errors and timeouts, a dropped
  connection), plus whatever the ``Retry``'s own ``retry_on``/``retry_if`` accept;
* any other method (POST, PATCH) only on errors raised before the request was
  sent (``retry_unsent``, default on): connect errors and timeouts;
* a request body that cannot be replayed (a generator, a file, multipart with
  files) is never retried; one of at most ``buffer_body`` bytes (64 KiB) is read
  into memory first so that it can be. A longer one is sent as it is, once.
* ``idempotency_key=True`` adds an ``Idempotency-Key`` header (a UUID4) to
  non-idempotent requests that lack one, the same for all their attempts; add
  ``"POST"`` to ``retry_methods`` when the server honours it.

A response about to be retried is read (when its Content-Length is at most
64 KiB, so the connection is reused) or closed before the retry sleeps: no
connection is left checked out of the pool.

**Server hints.** ``Retry-After`` (delay-seconds or HTTP-date), else the IETF
``RateLimit`` field (the reset of an exhausted policy, or its window from
``RateLimit-Policy``), else
``X-RateLimit-Reset``/``RateLimit-Reset`` when nothing remains (see
:func:`server_hint`). Malformed values are ignored; ``Retry-After`` wins. The
hint replaces the backoff delay, capped by the retry's ``max_retry_after``; a
hint longer than the time left before a deadline stops the retries at once
(no sleep that could only end past the deadline). With ``pace=True`` the hint
of a 429/503, or an exhausted quota on any response, also *holds the host*:
later requests to it wait until the hint passes, or fail at once with
:class:`~resilient.RateLimitedError` when the wait is longer than
``max_pace_wait`` or than the time left before a deadline.

**Deadlines.** A sync :class:`~resilient.Timeout` cannot interrupt a socket, so
the transport clamps each attempt's ``request.extensions["timeout"]`` (connect,
read, write, pool) to the time left before the nearest published deadline
(:func:`resilient.remaining`), and turns the resulting ``httpx`` timeout into
that policy's :class:`~resilient.TimeoutExceededError`, as the async Timeout
raises. A retry never starts an attempt once a deadline has passed.

**Routes and registries.** ``routes=[Route("payments", host="pay.example.com",
path="/v2", methods=["POST"]), ...]`` send matching requests through their own
policies (first match wins; others use the default ones). A name is looked up
in ``registry=`` (a :class:`~resilient.config.Registry` or any mapping of names
to policies) on each request, so a reloaded registry takes effect. A rate
limiter or breaker in a route receives the ``httpx.Request`` as its call
argument, so a key function can partition by host (:func:`request_host`).

**Events.** The adapted retries' events carry ``attributes`` ``method``,
``host`` (with a non-default port) and ``status`` (or ``error``) - never the URL,
its query string or credentials. The transport itself emits ``CallRejected``
when pacing refuses a request.

Limits: a transport sees the response *head*; an error while the caller reads
the body later (``response.read()``) happens outside the transport and is not
retried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._core import (
    FAILURE_STATUSES,
    IDEMPOTENT_METHODS,
    RETRY_ERRORS,
    RETRY_STATUSES,
    UNSENT_ERRORS,
    FailedResponseError,
    Route,
    TransportConfig,
)
from ._core import (
    host_key as _host_key,
)
from ._hints import parse_retry_after, server_hint
from ._transport import AsyncResilientTransport, ResilientTransport

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AsyncResilientTransport",
    "FailedResponseError",
    "FAILURE_STATUSES",
    "IDEMPOTENT_METHODS",
    "parse_retry_after",
    "request_host",
    "ResilientTransport",
    "RETRY_ERRORS",
    "RETRY_STATUSES",
    "Route",
    "server_hint",
    "TransportConfig",
    "UNSENT_ERRORS",
]


def request_host(request: httpx.Request, *args: object, **kwargs: object) -> str:
    """The request's host (with its port when one is given): a key function for
    per-host rate limiters and breakers in a transport's pipeline."""
    return _host_key(request.url)
