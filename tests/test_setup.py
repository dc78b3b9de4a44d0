"""First-run set-up: every page leads there until an administrator exists, and it runs only once."""
import threading

from sqlalchemy import func, select

from tests.conftest import ADMIN, csrf_token
from webapp.extensions import db
from webapp.models import AuditEntry, User


def _submit(client, username="admin", password=ADMIN[1], confirm=None):
    page = client.get("/setup/")
    return client.post("/setup/", data={"username": username, "password": password,
                                        "confirm": confirm if confirm is not None else password,
                                        "csrf_token": csrf_token(page.text)})


def test_pages_redirect_to_setup_until_an_admin_exists(client):
    for path in ("/", "/login", "/console/", "/no/such/page"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/setup/"), path


def test_machine_routes_never_redirect_to_setup(client):
    assert client.get("/healthz").status_code == 200
    api = client.post("/api/c/compapi/cmsi/send_weixin/", json={})
    assert api.status_code != 302 and api.is_json
    callback = client.get("/console/user_center/weixin/mp/callback/")
    assert callback.status_code != 302 and not callback.is_json
    user_center_json = client.get("/console/user_center/weixin/get_bind_status/")
    assert user_center_json.status_code != 302 and user_center_json.is_json
    ajax = client.get("/", headers={"Accept": "application/json"})
    assert ajax.status_code == 503 and ajax.json["result"] is False


def test_setup_creates_the_admin_and_signs_in(client, app):
    response = _submit(client)
    # No channel is configured yet, so the new administrator is taken to the set-up wizard.
    assert response.status_code == 302 and response.headers["Location"].endswith("/setup/wizard/")
    assert client.get("/console/").status_code == 200
    with app.app_context():
        admin = db.session.scalar(select(User).where(User.username == "admin"))
        assert admin.is_admin and admin.password_hash != ADMIN[1] and admin.check_password(ADMIN[1])
        assert db.session.scalar(select(AuditEntry.action)) == "setup.admin_created"


def test_setup_refuses_bad_input_and_writes_nothing(client, app):
    assert _submit(client, password="short").status_code == 400
    assert _submit(client, confirm="different-password").status_code == 400
    page = _submit(client, username="bad name!")
    assert "1 to 64 letters" in page.text
    assert "The two passwords differ." in _submit(client, confirm="different-password").text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_setup_cannot_run_twice(client, app):
    _submit(client)
    other = app.test_client()
    response = other.get("/setup/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    # Even a form fetched before the first admin existed cannot create a second one.
    late = app.test_client()
    with app.app_context():
        token_page = late.get("/login")
    response = late.post("/setup/", data={"username": "mallory", "password": "hidden-lantern-2",
                                          "confirm": "hidden-lantern-2", "csrf_token": csrf_token(token_page.text)})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_concurrent_setup_creates_one_admin(make_app):
    from webapp.setup.services import SetupAlreadyDone, create_first_admin

    app = make_app()
    outcomes = []
    barrier = threading.Barrier(4)

    def attempt(name):
        with app.test_request_context():
            barrier.wait()
            try:
                create_first_admin(name, "long-enough-password")
                outcomes.append("created")
            except SetupAlreadyDone:
                outcomes.append("refused")
            except Exception as exc:  # the marker row's uniqueness may surface as a database error
                outcomes.append(type(exc).__name__)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt, args=(f"admin{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User).where(User.is_admin)) == 1
    assert outcomes.count("created") == 1
