"""``GET /metrics``: Prometheus metrics for allowed addresses or holders of METRICS_TOKEN.

No session and no CSRF token: a monitoring system is not a person. It is reachable before first-run
set-up like ``/healthz``, so monitoring can be in place before an administrator signs in.
"""
from __future__ import annotations

from flask import Blueprint, Response, request
from flask_babel import gettext as _

from webapp import metrics

bp = Blueprint("ops", __name__)


@bp.get("/metrics")
def prometheus_metrics():
    """The metrics in Prometheus' text format, or 403 with how to allow this client."""
    if not metrics.scrape_allowed():
        return Response(
            _("Metrics are served only to allowed clients: add this address to METRICS_ALLOW_FROM, "
              "or set METRICS_TOKEN and send it as \"Authorization: Bearer <token>\".") + "\n",
            403, mimetype="text/plain")
    body, content_type = metrics.exposition(request.headers.get("Accept"))
    return Response(body, 200, content_type=content_type)
