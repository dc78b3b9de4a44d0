"""Serve a WSGI app over real HTTP for the length of a test.

Tests that must talk to something over the network (the WeChat simulator, the service itself)
use this instead of a test client, so that timeouts, dropped connections, latency and the
caller's address behave as they do in production::

    from tests.livesrv import serve

    with serve(app) as base_url:          # e.g. "http://127.0.0.1:54321"
        requests.get(f"{base_url}/healthz", timeout=5)

The server binds an ephemeral port on 127.0.0.1, answers each request in its own thread, and is
shut down (port released) when the block exits, even if the test failed.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

from werkzeug.serving import WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without the access-log line per request (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Skip the access log: a test run makes thousands of requests."""


@contextlib.contextmanager
def serve(app: Callable[..., Any], host: str = "127.0.0.1", port: int = 0,
          quiet: bool = True) -> Iterator[str]:
    """Serve ``app`` (any WSGI callable) in a daemon thread and yield its base URL.

    ``port=0`` picks a free port. Requests are handled in daemon threads, so a request still
    hanging when the block exits (a simulated slow answer, say) does not hold up shutdown.
    """
    server = make_server(host, port, app, threaded=True,
                         request_handler=_QuietHandler if quiet else None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"livesrv:{server.server_port}", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
