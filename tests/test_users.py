"""The users page (/console/users/): administrators list, create, disable, enable, reset and promote users.

Everything goes through the real pages with their CSRF tokens, and what a change means is checked
where it shows: signing in, the sessions already open, the console's doors, and the audit log.
"""
import re
import threading

import pytest
from sqlalchemy import func, select

from tests.conftest import ADMIN, USER, AuthActions, csrf_token
from webapp import channel
from webapp.auth.services import UserError, create_user
from webapp.extensions import db
from webapp.models import AuditEntry, Binding, User
from webapp.simulator.world import MP_APPID, MP_SECRET, TEMPLATE_NOTIFICATION_ID
from webapp.users import services

USERS = "/console/users/"
NEW_PASSWORD = "lantern-harbour-73"


def user_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == name))


def user_row(app, name: str) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == name))
        db.session.expunge(user)
        return user


def audit(app, action: str) -> list[tuple[str, str]]:
    """(actor, target) of every audit entry with ``action``, oldest first."""
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(AuditEntry.actor, AuditEntry.target).where(AuditEntry.action == action).order_by(AuditEntry.id))]


def post(client, path: str, data: dict, page: str | None = None):
    """POST a form of ``page`` (default: ``path``'s page) with that page's CSRF token."""
    token = csrf_token(client.get(page or USERS).text)
    return client.post(path, data={"csrf_token": token, **data})


def text(response) -> str:
    """The page's text with tags removed and spaces collapsed (what a person reads)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))


@pytest.fixture
def admin(client, auth, users):
    """The client signed in as the administrator."""
    assert auth.login().status_code == 302
    return client


@pytest.fixture
def other(app):
    """A second browser, signed in as the ordinary user."""
    browser = app.test_client()
    assert AuthActions(browser).login(*USER).status_code == 302
    return browser


def test_the_list_shows_role_state_binding_and_last_sign_in(app, admin):
    with app.app_context():
        channel.save(channel.normalize({"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": "Token2026",
                                        "wx_template_id": TEMPLATE_NOTIFICATION_ID}), actor="test")
        create_user("bob", "violet-orbit-61")
        with db.transaction() as session:
            alice = session.scalar(select(User).where(User.username == USER[0]))
            bob = session.scalar(select(User).where(User.username == "bob"))
            session.add(Binding(user_id=alice.id, channel="mp", account=MP_APPID, wx_id="oAlice"))
            session.add(Binding(user_id=bob.id, channel="mp", account="wxAnotherAccount", wx_id="oBob"))
    page = admin.get(USERS)
    assert page.status_code == 200
    rows = {name: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)) for name, body in
            re.findall(r'<tr data-user="([^"]+)">(.*?)</tr>', page.text, re.S)}
    assert set(rows) == {"admin", "alice", "bob"}
    assert "Administrator" in rows["admin"] and "(you)" in rows["admin"] and "enabled" in rows["admin"]
    assert "not bound" in rows["admin"] and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", rows["admin"])  # signed in just now
    assert "User" in rows["alice"] and "Official Account" in rows["alice"] and "never" in rows["alice"]
    assert "not bound" in rows["bob"] and "1 binding to another account (not used)" in rows["bob"]
    assert "3 users" in text(page)
    # The password rules stand next to the new password field.
    assert "At least 10 characters" in text(page)
    # A search keeps only the matching names.
    assert re.findall(r'<tr data-user="([^"]+)"', admin.get(USERS + "?q=LIC").text) == ["alice"]
    assert "No user matches." in admin.get(USERS + "?q=nobody%25").text


def test_only_administrators_reach_the_page(app, client, users, other):
    alice = user_id(app, USER[0])
    # Signed out: the sign-in page, and back here afterwards.
    anonymous = app.test_client().get(USERS)
    assert anonymous.status_code == 302 and "/login?next=/console/users/" in anonymous.headers["Location"]
    # An ordinary user: 403 on every page and every form, and nothing changes.
    token = csrf_token(other.get("/").text)
    assert other.get(USERS).status_code == 403
    assert other.get(f"{USERS}{alice}/").status_code == 403
    for path, data in ((USERS, {"username": "mallory", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "is_admin": "y"}),
                       (f"{USERS}{alice}/admin", {"admin": "1"}), (f"{USERS}{alice}/enabled", {"enabled": "0"}),
                       (f"{USERS}{alice}/password", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})):
        assert other.post(path, data={"csrf_token": token, **data}).status_code == 403, path
    assert not user_row(app, USER[0]).is_admin and user_row(app, USER[0]).enabled
    assert AuthActions(app.test_client()).login(*USER).status_code == 302  # the password is unchanged
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 2
    # A form without its CSRF token changes nothing either.
    auth = AuthActions(client)
    auth.login()
    assert client.post(f"{USERS}{alice}/enabled", data={"enabled": "0"}).status_code == 400
    assert user_row(app, USER[0]).enabled


def test_create_a_user_then_they_sign_in(app, admin):
    answer = post(admin, USERS, {"username": " carol ", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert answer.status_code == 302 and answer.headers["Location"].endswith(USERS)  # redirect after the post
    page = admin.get(USERS)
    assert "The user carol is created." in page.text
    assert 'value="carol"' not in page.text  # the form is empty again
    assert AuthActions(app.test_client()).login("carol", NEW_PASSWORD).status_code == 302
    assert not user_row(app, "carol").is_admin
    assert audit(app, "user.create")[-1] == ("admin", "carol")
    # With the box ticked, an administrator.
    post(admin, USERS, {"username": "dora", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "is_admin": "y"})
    assert user_row(app, "dora").is_admin
    with app.app_context():
        assert db.session.scalar(select(AuditEntry.detail).where(AuditEntry.target == "dora")) == {"admin": True}


@pytest.mark.parametrize("username, password, confirm, sentence", [
    ("ALICE", NEW_PASSWORD, NEW_PASSWORD, "The user name ALICE is already taken."),
    ("bad name!", NEW_PASSWORD, NEW_PASSWORD, "A user name is 1 to 64 letters, digits or the characters _ . @ -."),
    ("x" * 65, NEW_PASSWORD, NEW_PASSWORD, "Field cannot be longer than 64 characters."),
    ("erin", "short-1", "short-1", "The password must be at least 10 characters long."),
    ("erin", "erin-lantern-2", "erin-lantern-2", "The password must not contain the user name."),
    ("erin", "administrator", "administrator", "one of the most common ones"),
    ("erin", "abcdefghijkl", "abcdefghijkl", "must mix at least two kinds of characters"),
    ("erin", NEW_PASSWORD, NEW_PASSWORD + "x", "The two passwords differ."),
    ("", NEW_PASSWORD, NEW_PASSWORD, "This field is required."),
])
def test_bad_input_is_refused_with_a_sentence_and_nothing_is_created(app, admin, username, password, confirm, sentence):
    answer = post(admin, USERS, {"username": username, "password": password, "confirm": confirm})
    assert answer.status_code == 400
    assert sentence in text(answer)
    assert 'class="form-control is-invalid"' in answer.text or "is-invalid" in answer.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 2
    assert audit(app, "user.create") == [("system", "admin"), ("system", "alice")]


def test_sentences_are_in_chinese_too(app, admin):
    admin.get("/language/zh")
    page = admin.get(USERS)
    assert "用户" in page.text and "创建用户" in page.text
    refused = post(admin, USERS, {"username": "alice", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert refused.status_code == 400 and "用户名 alice 已被占用" in refused.text
    me = user_id(app, ADMIN[0])
    refused = post(admin, f"{USERS}{me}/enabled", {"enabled": "0"})
    assert refused.status_code == 409 and "唯一" in refused.text


def test_disable_ends_sign_in_and_open_sessions_and_enable_brings_them_back(app, admin, other):
    alice = user_id(app, USER[0])
    assert other.get("/").status_code == 200
    answer = post(admin, f"{USERS}{alice}/enabled", {"enabled": "0"})
    assert answer.status_code == 302 and answer.headers["Location"].endswith(f"{USERS}{alice}/")
    assert "alice is disabled" in admin.get(answer.headers["Location"]).text
    assert not user_row(app, USER[0]).enabled
    # The session alice had open ends at once, and she cannot sign in again.
    assert other.get("/").status_code == 302 and "/login" in other.get("/").headers["Location"]
    assert AuthActions(app.test_client()).login(*USER).status_code == 401
    # Disabling twice changes nothing more (one audit entry).
    post(admin, f"{USERS}{alice}/enabled", {"enabled": "0"})
    assert audit(app, "user.disable") == [("admin", "alice")]

    post(admin, f"{USERS}{alice}/enabled", {"enabled": "1"})
    assert user_row(app, USER[0]).enabled
    assert other.get("/").status_code == 302  # the session that ended stays ended
    assert AuthActions(app.test_client()).login(*USER).status_code == 302
    assert audit(app, "user.enable") == [("admin", "alice")]


def test_a_remembered_sign_in_ends_for_good_when_the_user_is_disabled(app, admin):
    alice = user_id(app, USER[0])
    remembered = app.test_client()
    page = remembered.get("/login")
    remembered.post("/login", data={"username": USER[0], "password": USER[1], "remember": "y", "csrf_token": csrf_token(page.text)})
    assert remembered.get_cookie("remember_token") is not None
    post(admin, f"{USERS}{alice}/enabled", {"enabled": "0"})
    assert remembered.get("/").status_code == 302
    assert remembered.get_cookie("remember_token") is None  # deleted, not merely refused
    post(admin, f"{USERS}{alice}/enabled", {"enabled": "1"})
    assert remembered.get("/").status_code == 302


def test_reset_password_the_new_one_works_and_the_old_one_not(app, admin, other):
    alice = user_id(app, USER[0])
    page = f"{USERS}{alice}/"
    assert "At least 10 characters" in text(admin.get(page))  # the rules next to the field
    weak = post(admin, f"{page}password", {"password": "alice-2024", "confirm": "alice-2024"}, page=page)
    assert weak.status_code == 400 and "must not contain the user name" in text(weak)
    assert AuthActions(app.test_client()).login(*USER).status_code == 302  # nothing changed

    answer = post(admin, f"{page}password", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, page=page)
    assert answer.status_code == 302 and answer.headers["Location"].endswith(page)
    assert "alice has a new password" in admin.get(page).text
    assert AuthActions(app.test_client()).login(USER[0], NEW_PASSWORD).status_code == 302
    assert AuthActions(app.test_client()).login(*USER).status_code == 401
    assert other.get("/").status_code == 302  # her open session ended with the old password
    assert audit(app, "user.password_reset") == [("admin", "alice")]


def test_an_administrator_resets_their_own_password_on_their_own_page(app, admin):
    me = user_id(app, ADMIN[0])
    page = admin.get(f"{USERS}{me}/")
    assert 'id="reset-password"' not in page.text and "/account/password" in page.text
    refused = post(admin, f"{USERS}{me}/password", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert refused.status_code == 400 and "Change your own password on the Change my password page" in text(refused)
    assert AuthActions(app.test_client()).login(*ADMIN).status_code == 302


def test_grant_and_remove_the_administrator_role(app, admin, other):
    alice = user_id(app, USER[0])
    assert other.get("/console/").status_code == 403
    answer = post(admin, f"{USERS}{alice}/admin", {"admin": "1"})
    assert answer.status_code == 302
    assert "alice is an administrator." in admin.get(answer.headers["Location"]).text
    assert other.get("/console/").status_code == 200 and other.get(USERS).status_code == 200
    post(admin, f"{USERS}{alice}/admin", {"admin": "0"})
    assert "alice is no longer an administrator." in admin.get(f"{USERS}{alice}/").text
    assert other.get("/console/").status_code == 403
    assert audit(app, "user.admin_grant") == [("admin", "alice")]
    assert audit(app, "user.admin_revoke") == [("admin", "alice")]


def test_the_last_administrator_is_neither_disabled_nor_demoted(app, admin):
    me = user_id(app, ADMIN[0])
    page = admin.get(f"{USERS}{me}/")
    assert "You are the only enabled administrator." in text(page) and 'id="toggle-enabled"' not in page.text
    for path, data in ((f"{USERS}{me}/enabled", {"enabled": "0"}), (f"{USERS}{me}/admin", {"admin": "0"})):
        refused = post(admin, path, data)
        assert refused.status_code == 409
        assert "admin is the only enabled administrator, so nothing was changed" in text(refused)
    assert user_row(app, ADMIN[0]).is_admin and user_row(app, ADMIN[0]).enabled
    assert admin.get("/console/").status_code == 200
    assert audit(app, "user.disable") == audit(app, "user.admin_revoke") == []


def test_with_a_second_administrator_one_still_cannot_lock_themselves_out(app, admin):
    post(admin, USERS, {"username": "dora", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "is_admin": "y"})
    me = user_id(app, ADMIN[0])
    assert "This is your own account." in text(admin.get(f"{USERS}{me}/"))
    refused = post(admin, f"{USERS}{me}/enabled", {"enabled": "0"})
    assert refused.status_code == 409 and "You cannot disable your own account" in text(refused)
    refused = post(admin, f"{USERS}{me}/admin", {"admin": "0"})
    assert refused.status_code == 409 and "You cannot remove your own administrator role" in text(refused)
    assert user_row(app, ADMIN[0]).is_admin and user_row(app, ADMIN[0]).enabled
    # Another administrator may, as long as one enabled administrator remains.
    dora = app.test_client()
    AuthActions(dora).login("dora", NEW_PASSWORD)
    assert post(dora, f"{USERS}{me}/admin", {"admin": "0"}).status_code == 302
    assert not user_row(app, ADMIN[0]).is_admin
    # A disabled administrator does not count: dora stays the last enabled one.
    dora_id = user_id(app, "dora")
    assert admin.get(USERS).status_code == 403
    with app.test_request_context():
        refused = pytest.raises(UserError, services.set_enabled, dora_id, False, actor=db.session.get(User, me))
        assert "dora is the only enabled administrator" in str(refused.value)


def test_unknown_users_and_bad_switches_are_refused_clearly(app, admin):
    alice = user_id(app, USER[0])
    for path in (f"{USERS}4242/enabled", f"{USERS}4242/admin", f"{USERS}4242/password"):
        answer = post(admin, path, {"enabled": "0", "admin": "1", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert answer.status_code == 404 and "There is no user with the number 4242" in text(answer), path
    assert admin.get(f"{USERS}4242/").status_code == 404
    assert admin.get(f"{USERS}99999999999999999999/").status_code == 404  # beyond any database id: no 500
    refused = post(admin, f"{USERS}{alice}/enabled", {"enabled": "maybe"})
    assert refused.status_code == 400 and "Nothing was changed" in text(refused)
    refused = post(admin, f"{USERS}{alice}/admin", {})
    assert refused.status_code == 400 and "Nothing was changed" in text(refused)
    assert user_row(app, USER[0]).enabled and not user_row(app, USER[0]).is_admin
    assert admin.get(USERS + "?page=99999999999999").status_code == 200


def test_pages_only_read(app, admin):
    """Opening the pages writes nothing (no audit entry, no change to any user)."""
    alice = user_id(app, USER[0])
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(AuditEntry))
    for path in (USERS, f"{USERS}{alice}/", f"{USERS}?q=a", f"{USERS}{alice}/enabled"):
        admin.get(path)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEntry)) == before
    assert user_row(app, USER[0]).enabled


class TestTwoAdministratorsDemotingEachOther:
    """At the same moment, A removes B's role and B removes A's: one wins, the other is refused."""

    @pytest.fixture
    def database_url(self, either_database_url):
        return either_database_url

    def test_one_administrator_always_remains(self, app):
        with app.test_request_context():
            create_user("ann", NEW_PASSWORD, is_admin=True)
            create_user("ben", NEW_PASSWORD, is_admin=True)
            ids = {u.username: u.id for u in db.session.scalars(select(User))}
            db.session.remove()
        start = threading.Barrier(2)
        outcomes = {}

        def demote(actor: str, target: str) -> None:
            with app.test_request_context():
                me = db.session.get(User, ids[actor])
                start.wait()
                try:
                    services.set_admin(ids[target], False, actor=me)
                    outcomes[actor] = "done"
                except UserError as exc:
                    outcomes[actor] = str(exc)
                finally:
                    db.session.remove()

        threads = [threading.Thread(target=demote, args=pair) for pair in (("ann", "ben"), ("ben", "ann"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        done = [actor for actor, outcome in outcomes.items() if outcome == "done"]
        refused = [outcome for outcome in outcomes.values() if outcome != "done"]
        assert len(done) == 1 and len(refused) == 1 and "is the only enabled administrator" in refused[0]
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(User).where(User.is_admin.is_(True))) == 1
