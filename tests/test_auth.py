"""Signing in and out: CSRF, safe ``next`` handling, roles and throttling of failed attempts."""
import pytest

from tests.conftest import ADMIN, USER, csrf_token


def test_login_and_logout(client, auth, users):
    response = auth.login()
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "Sign out" in client.get("/").text
    response = auth.logout()
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert client.get("/").status_code == 302


def test_wrong_password_is_refused(client, auth, users):
    response = auth.login(password="wrong-password")
    assert response.status_code == 401 and "The user name or password is wrong." in response.text
    assert client.get("/").status_code == 302


def test_login_requires_csrf_token(client, users):
    response = client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert response.status_code == 400 and "Reload the page" in response.text


def test_logout_requires_post_with_csrf(client, auth, users):
    auth.login()
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200  # still signed in


@pytest.mark.parametrize(
    "target, expected",
    [("/console/", "/console/"), ("https://evil.example/", "/"), ("//evil.example/x", "/"),
     ("javascript:alert(1)", "/"), ("/\\evil.example", "/")],
)
def test_next_is_followed_only_within_the_site(auth, users, target, expected):
    response = auth.login(next=target)
    assert response.headers["Location"] == expected


def test_pages_send_anonymous_visitors_to_login_with_next(client, users):
    response = client.get("/console/")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=/console/"


def test_console_is_for_administrators_only(client, auth, users):
    auth.login(*USER)
    assert client.get("/console/").status_code == 403
    assert "Console" not in client.get("/").text.split("<main")[0]
    auth.logout()
    auth.login(*ADMIN)
    assert client.get("/console/").status_code == 200
    assert "Console" in client.get("/").text.split("<main")[0]


def test_disabled_user_cannot_sign_in(app, client, auth, users):
    from sqlalchemy import update

    from webapp.extensions import db
    from webapp.models import User

    with app.app_context():
        db.session.execute(update(User).where(User.username == USER[0]).values(enabled=False))
        db.session.commit()
    assert auth.login(*USER).status_code == 401


def test_failed_logins_are_throttled_per_user(app, client, auth, users):
    limit = app.config["LOGIN_MAX_FAILURES_PER_USER"]
    for _ in range(limit):
        assert auth.login(password="nope-nope").status_code == 401
    # Even the right password is refused while throttled, and the answer says how long to wait.
    response = auth.login()
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in response.text
    # Another user is not affected by the first user's failures.
    assert auth.login(*USER).status_code == 302


def test_failed_logins_are_throttled_per_address(make_app, users):
    app = make_app(LOGIN_MAX_FAILURES_PER_ADDRESS=3, LOGIN_MAX_FAILURES_PER_USER=100)
    client = app.test_client()
    for name in ("x1", "x2", "x3"):
        page = client.get("/login")
        client.post("/login", data={"username": name, "password": "bad-password", "csrf_token": csrf_token(page.text)})
    page = client.get("/login")
    response = client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": csrf_token(page.text)})
    assert response.status_code == 429


def test_throttling_ends_after_the_window(make_app, users):
    app = make_app(LOGIN_WINDOW_SECONDS=1, LOGIN_MAX_FAILURES_PER_USER=1)
    client = app.test_client()
    from tests.conftest import AuthActions

    auth = AuthActions(client)
    assert auth.login(password="bad-password").status_code == 401
    assert auth.login().status_code == 429
    import time

    time.sleep(1.1)
    assert auth.login().status_code == 302


def test_nul_characters_are_refused_with_a_clear_400(client, users):
    page = client.get("/login")
    response = client.post("/login", data={"username": "ad\x00min", "password": "x", "csrf_token": csrf_token(page.text)})
    assert response.status_code == 400 and "NUL character" in response.text
    assert client.get("/login?next=/%00").status_code == 400
