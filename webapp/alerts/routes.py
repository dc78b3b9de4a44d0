"""The alert webhooks: ``POST /api/v1/webhooks/alertmanager/`` and ``/api/v1/webhooks/grafana/``."""
from __future__ import annotations

from flask import Blueprint

from webapp import logs
from webapp.alerts import notifications, services
from webapp.api.sending import Answer
from webapp.api.services import ApiError
from webapp.extensions import csrf

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks")


@bp.errorhandler(ApiError)
def refused(exc: ApiError):
    """A refused notification: the send API's JSON shape, with the refusal's status and headers."""
    return Answer.refusal(exc, logs.current_id()).response()


# Without the trailing slash too: a URL typed without it must not become a redirect the sender drops.
@bp.post("/alertmanager/", strict_slashes=False)
@csrf.exempt
def alertmanager():
    """A Prometheus Alertmanager webhook notification (version 4), sent to the receivers in the query."""
    return services.receive(notifications.ALERTMANAGER, logs.current_id()).response()


@bp.post("/grafana/", strict_slashes=False)
@csrf.exempt
def grafana():
    """A Grafana webhook contact point notification, sent to the receivers in the query."""
    return services.receive(notifications.GRAFANA, logs.current_id()).response()
