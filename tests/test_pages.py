"""Layout, error pages (HTML for people, JSON for programs), languages and the health check."""
import re

from tests.conftest import USER


def test_error_pages_for_people(client, auth, users):
    auth.login()
    response = client.get("/no/such/page")
    assert response.status_code == 404 and "<html" in response.text and "Page not found" in response.text


def test_errors_are_json_for_programs(client, users):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.json["result"] is False
    response = client.get("/no/such/page", headers={"Accept": "application/json"})
    assert response.is_json


def test_unexpected_errors_are_friendly_and_leak_nothing(make_app, users):
    app = make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("internal detail with a secret: s3cr3t")

    client = app.test_client()
    from tests.conftest import AuthActions

    AuthActions(client).login()
    response = client.get("/boom")
    assert response.status_code == 500 and "Something went wrong" in response.text and "s3cr3t" not in response.text
    response = client.get("/boom", headers={"Accept": "application/json"})
    assert response.status_code == 500 and "s3cr3t" not in response.text


def test_forbidden_page(client, auth, users):
    auth.login(*USER)
    response = client.get("/console/")
    assert response.status_code == 403 and "Not allowed" in response.text


def test_language_follows_the_browser_and_can_be_switched(client, auth, users):
    page = client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh-CN">' in page.text and "登录" in page.text
    page = client.get("/login", headers={"Accept-Language": "en-US"})
    assert "Sign in" in page.text
    response = client.get("/language/zh?next=/login")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "登录" in client.get("/login", headers={"Accept-Language": "en-US"}).text
    assert client.get("/language/zh?next=https://evil.example/").headers["Location"] == "/"


def test_pages_use_only_our_own_assets(client, users):
    html = client.get("/login").text
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith("/") or url == "#", url
    for asset in re.findall(r'(?:src|href)="(/[^"]+\.(?:css|js|svg))"', html):
        with client.get(asset) as response:  # a file answer holds the file open until closed
            assert response.status_code == 200, asset
    assert "<script>" not in html  # no inline scripts


def test_layout_is_responsive(client, users):
    html = client.get("/login").text
    assert 'name="viewport"' in html and "navbar-toggler" in html


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    # No scheduler has ever run against this database: the app answers, but says so.
    assert response.json == {"status": "degraded", "database": "ok", "tokens": {},
                             "scheduler": {"in_process": False, "state": "external",
                                           "last_heartbeat_age_seconds": None, "status": "never"}}


def test_healthz_reports_a_broken_database(make_app, tmp_path):
    broken = tmp_path / "not-a-database.sqlite3"
    broken.write_bytes(b"this is not sqlite" * 100)
    app = make_app(DATABASE_URL=f"sqlite:///{broken}")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503 and response.json["database"] == "unavailable"


def test_first_run_page_gets_its_assets_before_setup(client):
    html = client.get("/setup/").text
    for asset in re.findall(r'(?:src|href)="(/[^"]+\.(?:css|js|svg))"', html):
        with client.get(asset) as response:  # a file answer holds the file open until closed
            assert response.status_code == 200, asset
