"""Hardening: security headers, Secure cookies behind HTTPS, password rules, changing one's password."""
import pytest
from sqlalchemy import select

from tests.conftest import ADMIN, USER, csrf_token
from webapp.auth.passwords import COMMON_PASSWORDS, password_problem
from webapp.extensions import db
from webapp.models import AuditEntry, LoginFailure, User

EXPECTED_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
                "base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


# --- headers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/login", "/setup/", "/healthz", "/static/css/app.css", "/nowhere",
                                  "/api/c/compapi/cmsi/send_weixin/", "/console/user_center/weixin/mp/callback/"])
def test_every_answer_carries_the_security_headers(client, path):
    with client.get(path) as response:  # a file answer holds the file open until closed
        headers = response.headers
    assert headers["Content-Security-Policy"] == EXPECTED_CSP
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in headers["Permissions-Policy"]
    # Plain HTTP: no HSTS (it would be ignored, and is wrong for a trial install on http://).
    assert "Strict-Transport-Security" not in headers


def test_hsts_only_over_https(client):
    assert "Strict-Transport-Security" in client.get("/login", base_url="https://notify.example.com").headers


def test_hsts_behind_a_tls_proxy_when_proxies_are_trusted(make_app):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.0.0.1", "X-Forwarded-Host": "notify.example.com"}
    trusted = make_app(PROXY_COUNT=1).test_client()
    assert trusted.get("/login", headers=forwarded).headers["Strict-Transport-Security"].startswith("max-age=")
    # Without PROXY_COUNT the forwarded scheme is not believed (anyone could send the header).
    untrusted = make_app().test_client()
    assert "Strict-Transport-Security" not in untrusted.get("/login", headers=forwarded).headers


def test_pages_have_no_inline_script_or_style(client, auth, users):
    """The CSP forbids them: a page that still had one would be broken (the browser test checks the rest)."""
    auth.login()
    for path in ("/login", "/", "/console/", "/console/apps/", "/console/audit/", "/console/deliveries/",
                 "/console/bindings/", "/account/password", "/console/user_center/weixin/"):
        html = client.get(path).text
        assert " style=" not in html, path
        assert "<script>" not in html and " onclick=" not in html and " onload=" not in html, path


# --- cookies -------------------------------------------------------------------------------------

def _session_cookie_header(app) -> str:
    """Sign in as ADMIN and return the Set-Cookie header of the session cookie."""
    from webapp.auth.services import create_user

    with app.test_request_context():
        create_user(*ADMIN, is_admin=True)
        db.session.remove()
    client = app.test_client()
    page = client.get("/login")
    response = client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "remember": "y",
                                           "csrf_token": csrf_token(page.text)})
    assert response.status_code == 302
    return response.headers.getlist("Set-Cookie")


def test_cookies_are_httponly_lax_and_not_secure_over_plain_http(make_app):
    cookies = _session_cookie_header(make_app())
    session = next(c for c in cookies if c.startswith("session="))
    remember = next(c for c in cookies if c.startswith("remember_token="))
    for cookie in (session, remember):
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_cookies_are_secure_when_the_public_url_is_https(make_app):
    app = make_app(PUBLIC_URL="https://notify.example.com")
    assert app.config["SESSION_COOKIE_SECURE"] is True and app.config["REMEMBER_COOKIE_SECURE"] is True
    for cookie in _session_cookie_header(app):
        if cookie.startswith(("session=", "remember_token=")):
            assert "Secure" in cookie and "HttpOnly" in cookie


@pytest.mark.parametrize(("extra", "secure"), [
    ({"PUBLIC_URL": "http://notify.example.com"}, False),
    ({"PUBLIC_URL": "HTTPS://notify.example.com"}, True),
    ({"PUBLIC_URL": "https://notify.example.com", "COOKIE_SECURE": False}, False),
    ({"PUBLIC_URL": "http://notify.example.com", "COOKIE_SECURE": True}, True),
    ({"COOKIE_SECURE": "true"}, True),
    ({"SESSION_COOKIE_SECURE": True}, True),
])
def test_cookie_secure_follows_public_url_with_an_override(make_app, extra, secure):
    app = make_app(**extra)
    assert app.config["SESSION_COOKIE_SECURE"] is secure
    if "SESSION_COOKIE_SECURE" not in extra:
        assert app.config["REMEMBER_COOKIE_SECURE"] is secure


# --- password rules ------------------------------------------------------------------------------

@pytest.mark.parametrize(("username", "password", "fragment"), [
    ("dave", "Sh0rt!", "at least 10 characters"),
    ("dave", "x" * 257, "at most 256 characters"),
    ("dave", "my-dave-secret-42", "must not contain the user name"),
    ("Dave", "xDAVEx-2024-!", "must not contain the user name"),
    ("dave", "Password123", "most common"),
    ("dave", "admin12345", "most common"),
    ("dave", "abcdefghijk", "two kinds of characters"),
    ("dave", "98127634519", "two kinds of characters"),
    ("dave", "!@#$%^&*()_+", "two kinds of characters"),
])
def test_weak_passwords_are_refused_with_a_sentence(app, username, password, fragment):
    with app.test_request_context():
        problem = password_problem(username, password)
    assert problem is not None and fragment in problem
    assert problem.endswith(".")


@pytest.mark.parametrize(("username", "password"), [
    ("dave", "maple-river-77"),
    ("dave", "correcthorsebatterystaple"),  # long enough to need no digits or symbols
    ("ab", "lab-notebook-9"),  # very short names are not looked for inside the password
    ("dave", "黑夜给了我黑色的眼睛1"),
])
def test_good_passwords_pass(app, username, password):
    with app.test_request_context():
        assert password_problem(username, password) is None


def test_the_common_list_holds_only_passwords_the_other_rules_miss_or_famous_ones(app):
    assert len(COMMON_PASSWORDS) >= 50
    assert all(p == p.lower() for p in COMMON_PASSWORDS)


def test_minimum_length_is_configurable(make_app):
    app = make_app(PASSWORD_MIN_LENGTH=20)
    with app.test_request_context():
        assert "at least 20 characters" in password_problem("dave", "maple-river-77")


def test_first_run_setup_applies_the_rules(client):
    page = client.get("/setup/")
    response = client.post("/setup/", data={"username": "admin", "password": "admin-12345!", "confirm": "admin-12345!",
                                            "csrf_token": csrf_token(page.text)})
    assert response.status_code == 400 and "must not contain the user name" in response.text
    assert "At least 10 characters" in page.text  # the rules are shown before they are enforced


def test_cli_create_user_applies_the_rules(runner):
    result = runner.invoke(args=["create-user", "dave", "--password", "qwertyuiop123"])
    assert result.exit_code != 0 and "most common" in result.output


# --- changing one's password ----------------------------------------------------------------------

def _change(client, current, new, confirm=None):
    page = client.get("/account/password")
    assert page.status_code == 200
    return client.post("/account/password", data={"current": current, "password": new,
                                                   "confirm": new if confirm is None else confirm,
                                                   "csrf_token": csrf_token(page.text)})


def test_change_password_needs_sign_in(client, users):
    response = client.get("/account/password")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_user_changes_their_password_and_it_is_audited(app, client, auth, users):
    assert auth.login(*USER).status_code == 302
    response = _change(client, USER[1], "copper-kettle-33")
    assert response.status_code == 302
    assert "Your password is changed" in client.get("/").text
    with app.app_context():
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        assert alice.check_password("copper-kettle-33") and not alice.check_password(USER[1])
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "user.password_change"))
        assert entry.actor == "alice" and entry.target == "alice" and entry.detail is None
    auth.logout()
    assert auth.login(*USER).status_code == 401
    assert auth.login("alice", "copper-kettle-33").status_code == 302


def test_a_new_password_ends_the_users_other_sessions(app, client, auth, users):
    """A session signed in elsewhere (a stolen cookie, say) ends when the password changes; this one goes on."""
    other = app.test_client()
    page = other.get("/login")
    other.post("/login", data={"username": USER[0], "password": USER[1], "csrf_token": csrf_token(page.text)})
    assert other.get("/").status_code == 200
    auth.login(*USER)
    assert _change(client, USER[1], "copper-kettle-33").status_code == 302
    assert client.get("/").status_code == 200
    answer = other.get("/")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_a_password_reset_by_an_administrator_ends_the_users_sessions(app, client, auth, runner, users):
    auth.login(*USER)
    assert client.get("/").status_code == 200
    assert runner.invoke(args=["set-password", "alice", "--password", "fresh-start-404"]).exit_code == 0
    answer = client.get("/")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


@pytest.mark.parametrize(("current", "new", "confirm", "sentence"), [
    ("wrong-current-1", "copper-kettle-33", None, "Your current password is wrong."),
    (USER[1], USER[1], None, "the same as the current one"),
    (USER[1], "alice-copper-99", None, "must not contain the user name"),
    (USER[1], "password123", None, "most common"),
    (USER[1], "copper-kettle-33", "copper-kettle-34", "The two passwords differ."),
])
def test_change_password_refusals_change_nothing(app, client, auth, users, current, new, confirm, sentence):
    auth.login(*USER)
    response = _change(client, current, new, confirm)
    assert response.status_code == 400 and sentence in response.text
    with app.app_context():
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        assert alice.check_password(USER[1])
        assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "user.password_change")) is None


def test_the_navigation_links_to_the_change_password_page(client, auth, users):
    auth.login()
    assert 'href="/account/password"' in client.get("/").text


# --- set-password (an administrator resets a forgotten password) ----------------------------------

def test_cli_set_password_resets_and_unlocks(app, runner, users):
    with app.app_context():
        for _ in range(3):
            db.session.add(LoginFailure(username="alice", address="10.0.0.9"))
        db.session.commit()
    result = runner.invoke(args=["set-password", "alice", "--password", "fresh-start-404"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        assert alice.check_password("fresh-start-404")
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "user.password_reset"))
        assert entry.actor == "cli" and entry.target == "alice"
        assert db.session.scalar(select(LoginFailure).where(LoginFailure.username == "alice")) is None


def test_cli_set_password_refusals(runner, users):
    assert "There is no user nobody" in runner.invoke(args=["set-password", "nobody", "--password", "fresh-start-404"]).output
    result = runner.invoke(args=["set-password", "alice", "--password", "short"])
    assert result.exit_code != 0 and "at least 10 characters" in result.output


# --- secrets at rest: rotate-secrets covers wizard drafts and is audited --------------------------------

def test_rotate_secrets_reencrypts_wizard_drafts_and_skips_unreadable_ones(make_app):
    from webapp.models import ChannelConfig, WizardDraft
    from webapp.secretbox import SecretBox, box

    old = make_app(SECRET_KEY="old-key")
    with old.app_context():
        db.session.add(User(username="root", password_hash="x", is_admin=True))
        db.session.add(User(username="root2", password_hash="x", is_admin=True))
        db.session.flush()
        db.session.add(ChannelConfig(wx_type="mp", wx_app_id="wx1", wx_secret_enc=box().encrypt("app-secret")))
        db.session.add(WizardDraft(user_id=1, secrets_enc=box().encrypt('{"wx_secret": "draft-secret"}')))
        # A draft left from a key nobody has any more: harmless, the wizard asks for its secrets again.
        db.session.add(WizardDraft(user_id=2, secrets_enc=SecretBox("lost-key").encrypt("{}")))
        db.session.commit()
    new = make_app(SECRET_KEY="new-key", OLD_SECRET_KEYS=["old-key"])
    result = new.test_cli_runner().invoke(args=["rotate-secrets"])
    assert result.exit_code == 0 and "Re-encrypted 2" in result.output, result.output
    with new.app_context():
        draft = db.session.scalar(select(WizardDraft).where(WizardDraft.user_id == 1))
        assert SecretBox("new-key").decrypt(draft.secrets_enc) == '{"wx_secret": "draft-secret"}'
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "secrets.rotate"))
        assert entry.actor == "cli" and entry.detail == {"count": 2}


def test_rotate_secrets_with_an_unreadable_channel_secret_changes_nothing(make_app):
    from webapp.models import ChannelConfig
    from webapp.secretbox import SecretBox

    app = make_app(SECRET_KEY="new-key")
    with app.app_context():
        db.session.add(ChannelConfig(wx_type="mp", wx_app_id="wx1", wx_secret_enc=SecretBox("lost-key").encrypt("s")))
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["rotate-secrets"])
    assert result.exit_code != 0 and "cannot be decrypted" in result.output
    with app.app_context():
        assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "secrets.rotate")) is None


def test_reprs_of_configuration_and_crypto_hold_no_secret():
    """A Channel or MessageCrypto in a log line or a traceback names the account, never its secrets."""
    from webapp.channel import Channel
    from webapp.tokens import TokenSource
    from webapp.wechat import MessageCrypto

    secrets_ = {"wx_secret": "a1" * 16, "wx_token": "TokenValue2026", "wx_encoding_aes_key": "k" * 43,
                "wx_previous_encoding_aes_key": "p" * 43, "wx_qy_corpsecret": "CorpSecretValue0123456789"}
    configured = Channel(wx_type="mp", wx_app_id="wx0123456789abcdef", **secrets_)
    crypto = MessageCrypto(secrets_["wx_token"], secrets_["wx_encoding_aes_key"], "wx0123456789abcdef")
    source = TokenSource("mp", "wx0123456789abcdef", lambda: ("x", 1))
    for shown in (repr(configured), str(configured), repr(crypto), repr(source)):
        for name, value in secrets_.items():
            assert value not in shown, f"{name} appears in {shown[:80]}"
    assert "wx0123456789abcdef" in repr(configured)
