"""The administrators' console: calling applications and the delivery log, through the real pages."""
import re

from sqlalchemy import select

from tests.api_support import Api, mp, service, sim  # noqa: F401  (fixtures)
from tests.binding_support import browser, page_csrf
from webapp.auth.services import create_user
from webapp.extensions import db
from webapp.models import ApiApp, AuditEntry

BODY = {"receiver__username": "alice", "data": {"heading": "Backup failed", "message": "nightly backup of db1 failed"}}


def admin_session(app, base):
    with app.test_request_context():
        create_user("root", "granite-peak-8", is_admin=True)
        db.session.remove()
    return browser(base, "root", "granite-peak-8")


def test_register_an_application_and_use_its_secret_once_shown(mp):
    app, base, api = mp
    admin = admin_session(app, base)
    token = page_csrf(admin, base + "/console/apps/")
    page = admin.post(base + "/console/apps/", data={"app_code": "job_center", "rate_limit": "120", "csrf_token": token}, timeout=10)
    secret = re.search(r'id="secret-value">([^<]+)<', page.text).group(1)
    assert "cannot be shown again" in page.text
    assert Api(base, "job_center", secret).send(BODY).json()["result"] is True
    # The secret is never shown again.
    assert secret not in admin.get(base + "/console/apps/", timeout=10).text
    with app.app_context():
        assert db.session.scalar(select(ApiApp.rate_limit_per_minute).where(ApiApp.app_code == "job_center")) == 120


def test_rotate_disable_and_rate_limit(mp):
    app, base, api = mp
    admin = admin_session(app, base)
    with app.app_context():
        app_id = db.session.scalar(select(ApiApp.id).where(ApiApp.app_code == api.code))
    token = page_csrf(admin, base + "/console/apps/")
    page = admin.post(base + f"/console/apps/{app_id}/rotate", data={"csrf_token": token}, timeout=10)
    new_secret = re.search(r'id="secret-value">([^<]+)<', page.text).group(1)
    assert api.send(BODY).status_code == 401  # the old secret stops working at once
    api.secret = new_secret
    assert api.send(BODY).json()["result"] is True

    admin.post(base + f"/console/apps/{app_id}/enabled", data={"csrf_token": token, "enabled": "0"}, timeout=10)
    assert api.send(BODY).status_code == 401
    admin.post(base + f"/console/apps/{app_id}/enabled", data={"csrf_token": token, "enabled": "1"}, timeout=10)
    admin.post(base + f"/console/apps/{app_id}/rate", data={"csrf_token": token, "rate_limit": "1"}, timeout=10)
    # A limit of one a minute: of two sends in a row the second is refused, whether or not the first
    # still falls in the minute of the earlier sends (the window is the calendar minute).
    first, second = api.send(BODY).status_code, api.send(BODY).status_code
    assert first in (200, 429) and second == 429, (first, second)
    with app.app_context():
        actions = list(db.session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("api_app.%")).order_by(AuditEntry.id)))
    assert actions[-4:] == ["api_app.rotate_secret", "api_app.disable", "api_app.enable", "api_app.rate_limit"]


def test_delivery_log_filters_and_message_page_with_advice_and_retry(mp):
    from webapp.delivery.engine import deliver_due

    app, base, api = mp
    admin = admin_session(app, base)
    api.send(BODY)
    sim(base, "faults", {"endpoint": "template_send", "kind": "errcode", "errcode": 40037, "count": 1})
    failed = api.send({**BODY, "data": {"heading": "Template problem", "message": "x"}}).json()
    log = admin.get(base + "/console/deliveries/", params={"status": "failed"}, timeout=10).text
    assert "Template problem" in log and "Backup failed" not in log
    log = admin.get(base + "/console/deliveries/", params={"receiver": "alice", "app": api.code}, timeout=10).text
    assert "Template problem" in log and "Backup failed" in log
    page = admin.get(base + f"/console/messages/{failed['data']['message_id']}", timeout=10).text
    assert "40037" in page and "template" in page.lower() and "Retry" in page
    token = page_csrf(admin, base + f"/console/messages/{failed['data']['message_id']}")
    delivery_id = re.search(r'/console/deliveries/(\d+)/retry', page).group(1)
    answer = admin.post(base + f"/console/deliveries/{delivery_id}/retry", data={"csrf_token": token}, timeout=10)
    assert "queued again" in answer.text
    with app.app_context():
        assert deliver_due() == 1
    status = api.status(failed["data"]["message_id"]).json()["data"]["deliveries"][0]
    assert status["status"] == "sent"


def test_console_pages_are_for_administrators(mp):
    app, base, api = mp
    admin_session(app, base)  # set-up is done
    alice = browser(base, "alice", "violet-orbit-61")
    for path in ("/console/apps/", "/console/deliveries/", "/console/bindings/"):
        assert alice.get(base + path, timeout=10).status_code == 403


def test_overview_shows_channel_health_chart_and_frequent_errors(mp):
    app, base, api = mp
    admin = admin_session(app, base)
    api.send(BODY)
    sim(base, "faults", {"endpoint": "template_send", "kind": "errcode", "errcode": 40037, "count": 2})
    api.send(BODY)
    api.send(BODY)
    # WeChat verifies the callback URL (the simulator's 服务器配置 submit, done when connecting).
    page = admin.get(base + "/console/", timeout=10).text
    assert "valid" in page and "verified" in page  # token fetched, URL verified
    assert "1 sent" in page and "2 failed" in page
    assert "<svg" in page and "Deliveries per hour" in page
    assert "40037" in page and "× 2" in page
    audit = admin.get(base + "/console/audit/", params={"action": "api_app."}, timeout=10).text
    assert "api_app.create" in audit and "<code>channel.configure</code>" not in audit
