"""The live-server helper other test modules reuse."""
from __future__ import annotations

import socket

import pytest
import requests

from tests.livesrv import serve


def hello_app(environ, start_response):
    """A minimal WSGI app that echoes the caller's address."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["REMOTE_ADDR"].encode()]


def test_serve_yields_a_working_base_url_and_releases_the_port():
    with serve(hello_app) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        assert requests.get(base_url, timeout=5).text == "127.0.0.1"
        port = int(base_url.rsplit(":", 1)[1])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free again
    with pytest.raises(requests.ConnectionError):
        requests.get(base_url, timeout=1)


def test_serve_shuts_down_when_the_test_fails():
    with pytest.raises(RuntimeError):
        with serve(hello_app) as base_url:
            raise RuntimeError("test failed")
    with pytest.raises(requests.ConnectionError):
        requests.get(base_url, timeout=1)
