"""Every administrative change leaves an audit entry: who, what, on what, with no secret in it."""
import json
import re

from sqlalchemy import select

from tests.conftest import ADMIN, csrf_token
from webapp.extensions import db
from webapp.models import ApiApp, AuditEntry, Binding, Delivery, Message, User
from webapp.simulator.world import MP_APPID, MP_SECRET, TEMPLATE_NOTIFICATION_ID

# The administrative actions of the service, in the order the test below performs them.
ADMIN_ACTIONS = [
    ("setup.admin_created", ADMIN[0], ADMIN[0]),
    ("user.create", "cli", "bob"),
    ("user.password_reset", "cli", "bob"),
    ("user.create", ADMIN[0], "carol"),
    ("user.disable", ADMIN[0], "carol"),
    ("user.enable", ADMIN[0], "carol"),
    ("user.admin_grant", ADMIN[0], "carol"),
    ("user.admin_revoke", ADMIN[0], "carol"),
    ("user.password_reset", ADMIN[0], "carol"),
    ("api_app.create", ADMIN[0], "job_center"),
    ("api_app.rotate_secret", ADMIN[0], "job_center"),
    ("api_app.disable", ADMIN[0], "job_center"),
    ("api_app.enable", ADMIN[0], "job_center"),
    ("api_app.rate_limit", ADMIN[0], "job_center"),
    ("delivery.retry", ADMIN[0], "openid-of-bob"),
    ("binding.unbind", ADMIN[0], "openid-of-bob"),
    ("channel.configure", "cli", "mp"),
    ("secrets.rotate", "cli", ""),
    ("user.password_change", ADMIN[0], ADMIN[0]),
]


def _post(client, page_path, action_path, data):
    page = client.get(page_path)
    assert page.status_code == 200, page_path
    return client.post(action_path, data={**data, "csrf_token": csrf_token(page.text)})


def test_every_administrative_change_is_audited(app, client, tmp_path):
    runner = app.test_cli_runner()
    # First-run set-up (the client is then signed in as the administrator).
    assert _post(client, "/setup/", "/setup/", {"username": ADMIN[0], "password": ADMIN[1], "confirm": ADMIN[1]}).status_code == 302
    # Users, from the command line.
    assert runner.invoke(args=["create-user", "bob", "--password", "copper-kettle-3"]).exit_code == 0
    assert runner.invoke(args=["set-password", "bob", "--password", "copper-kettle-4"]).exit_code == 0
    # Users, from the users page.
    assert _post(client, "/console/users/", "/console/users/",
                 {"username": "carol", "password": "copper-kettle-5", "confirm": "copper-kettle-5"}).status_code == 302
    with app.app_context():
        carol = f"/console/users/{db.session.scalar(select(User.id).where(User.username == 'carol'))}/"
    for action, data in (("enabled", {"enabled": "0"}), ("enabled", {"enabled": "1"}), ("admin", {"admin": "1"}),
                         ("admin", {"admin": "0"}), ("password", {"password": "copper-kettle-6", "confirm": "copper-kettle-6"})):
        assert _post(client, carol, carol + action, data).status_code == 302
    # Calling applications, from the console (each new secret is shown on the page the POST redirects to).
    assert _post(client, "/console/apps/", "/console/apps/", {"app_code": "job_center", "rate_limit": "60"}).status_code == 303
    created = client.get("/console/apps/")
    with app.app_context():
        app_id = db.session.scalar(select(ApiApp.id).where(ApiApp.app_code == "job_center"))
        bob_id = db.session.scalar(select(User.id).where(User.username == "bob"))
    assert _post(client, "/console/apps/", f"/console/apps/{app_id}/rotate", {}).status_code == 303
    rotated = client.get("/console/apps/")
    assert _post(client, "/console/apps/", f"/console/apps/{app_id}/enabled", {"enabled": "0"}).status_code == 302
    assert _post(client, "/console/apps/", f"/console/apps/{app_id}/enabled", {"enabled": "1"}).status_code == 302
    assert _post(client, "/console/apps/", f"/console/apps/{app_id}/rate", {"rate_limit": "5"}).status_code == 302
    # A failed delivery retried, and a binding ended by the administrator.
    with app.app_context():
        message = Message(request_id="r1", channel="mp", account=MP_APPID, heading="h", body="b")
        message.deliveries.append(Delivery(receiver="openid-of-bob", status="failed", errcode=43004))
        binding = Binding(user_id=bob_id, channel="mp", account=MP_APPID, wx_id="openid-of-bob")
        db.session.add_all([message, binding])
        db.session.commit()
        delivery_id, binding_id, public_id = message.deliveries[0].id, binding.id, message.public_id
    assert _post(client, f"/console/messages/{public_id}", f"/console/deliveries/{delivery_id}/retry", {}).status_code == 302
    assert _post(client, "/console/bindings/", f"/console/bindings/{binding_id}/unbind", {}).status_code == 302
    # The channel, and the rotation of the stored secrets, from the command line.
    path = tmp_path / "weixin.json"
    path.write_text(json.dumps({"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": "Token123",
                                "wx_template_id": TEMPLATE_NOTIFICATION_ID}))
    assert runner.invoke(args=["weixin-config", str(path), "--no-check"]).exit_code == 0
    assert runner.invoke(args=["rotate-secrets"]).exit_code == 0
    # The administrator's own password.
    assert _post(client, "/account/password", "/account/password",
                 {"current": ADMIN[1], "password": "new-horse-10", "confirm": "new-horse-10"}).status_code == 302

    with app.app_context():
        entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action, e.actor, e.target) for e in entries] == ADMIN_ACTIONS
    # Details say what changed, never a secret.
    shown = json.dumps([e.detail for e in entries])
    app_secrets = [re.search(r'id="secret-value">([^<]+)<', page.text).group(1) for page in (created, rotated)]
    secrets = [MP_SECRET, "Token123", ADMIN[1], "new-horse-10", "copper-kettle-4", "copper-kettle-5", "copper-kettle-6",
               *app_secrets]
    assert not any(secret in shown for secret in secrets)
    details = {e.action: e.detail for e in entries}
    assert details["api_app.rate_limit"] == {"from": 60, "to": 5}
    assert details["delivery.retry"] == {"delivery": delivery_id, "errcode": 43004}
    assert details["binding.unbind"]["by"] == "admin"
    assert details["secrets.rotate"]["count"] == 2  # the AppSecret and the Token


def test_retrying_a_delivery_that_is_not_failed_changes_nothing_and_audits_nothing(app, client, users):
    from tests.conftest import AuthActions

    AuthActions(client).login()
    with app.app_context():
        message = Message(request_id="r2", channel="mp", account=MP_APPID, heading="h", body="b")
        message.deliveries.append(Delivery(receiver="openid-x", status="sent"))
        db.session.add(message)
        db.session.commit()
        delivery_id, public_id = message.deliveries[0].id, message.public_id
        before = db.session.query(AuditEntry).count()
    _post(client, f"/console/messages/{public_id}", f"/console/deliveries/{delivery_id}/retry", {})
    with app.app_context():
        assert db.session.get(Delivery, delivery_id).status == "sent"
        assert db.session.query(AuditEntry).count() == before
