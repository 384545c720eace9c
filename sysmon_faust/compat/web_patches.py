"""The worker's web server, patched where Faust and aiohttp give no public hook (one place).

* aiohttp answers a request its HTTP parser refuses (a request line or a
  header over 8190 bytes, more than 128 headers, an unknown method, not HTTP)
  itself, as text/plain, before any middleware: its connection handler is
  replaced so that those answers are JSON too, and logged in one line
  (tests/integration/test_http_hostile.py: 49 hostile requests, 4xx JSON).
* Faust serves a "dummy index" at ``/`` (``{"status": "OK"}``); the worker's
  index lists its endpoints instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web as aiohttp_web
from aiohttp import web_protocol, web_server
from faust.web.apps import production_index

log = logging.getLogger(__name__)


def _json_error(status: int, message: str, **extra: Any) -> aiohttp_web.Response:
    return aiohttp_web.json_response({"error": message, **extra}, status=status)


class _JsonErrorsRequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler, with its own error answers as JSON.

    A request aiohttp's HTTP parser refuses (request line or a header over
    8190 bytes, more than 128 headers, an unknown method, a byte that may not
    be in a URL, not HTTP at all) never reaches the application or its
    middlewares: aiohttp answers it itself, as text/plain, from
    ``handle_error`` — which also answers a handler that timed out (504) or
    an exception no middleware caught (500, an HTML page with a traceback
    when the client accepts HTML and debug is on).
    """

    __slots__ = ()

    def handle_error(
        self,
        request: aiohttp_web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> aiohttp_web.StreamResponse:
        if status >= 500:
            # aiohttp's own: logs the exception, raises when part of a
            # response was sent already.
            super().handle_error(request, status, exc, message)
        else:
            # A malformed request is the client's doing: one line, not the
            # parser's traceback at ERROR (aiohttp's) for each.
            first_line = (message or "").strip().split("\n", 1)[0]
            log.info("HTTP %s: refused a request from %s: %s", status, request.remote, first_line)
            if request.writer.output_size > 0:
                raise ConnectionError("a response was sent already, cannot send the error")
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "error"
        if status == HTTPStatus.INTERNAL_SERVER_ERROR:
            reason = "internal error"  # as the middleware says it; no traceback
        # The parser's message says what it refused (and where); no traceback.
        extra = {"detail": message[:300]} if message and status < 500 else {}
        response = _json_error(status, reason, **extra)
        response.force_close()
        return response


# aiohttp's Server creates each connection's handler by this module-level name
# (aiohttp.web_server.Server.__call__); Faust's web server is the only aiohttp
# server of a worker.


def install_json_request_errors() -> None:
    """Every connection of the worker's web server answers its errors as JSON.

    aiohttp's Server makes each connection's handler by this module-level
    name (aiohttp.web_server.Server.__call__); Faust's web server is the
    only aiohttp server of a worker.
    """
    web_server.RequestHandler = _JsonErrorsRequestHandler  # type: ignore[misc]


def replace_faust_index(get: Callable[[Any, Any], Awaitable[Any]]) -> None:
    """``GET /`` answers with ``get`` (a view method) instead of Faust's dummy index."""
    production_index.Index.get = get  # type: ignore[method-assign,assignment]
