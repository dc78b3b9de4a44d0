"""The Official Account and WeCom clients over real HTTP to a small local server.

The server answers canned JSON per (method, path); nothing in requests is mocked.
"""
import json
import logging
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from webapp.wechat.errors import WeChatAPIError, WeChatRequestError, WeChatTransportError
from webapp.wechat.http import DEFAULT_TIMEOUT, make_session
from webapp.wechat.mp import MpClient, template_keys
from webapp.wechat.work import WorkClient

TOKEN = "ACCESS_TOKEN_SHOULD_NEVER_BE_LOGGED_123"
SECRET = "APP_SECRET_SHOULD_NEVER_BE_LOGGED_456"


class FakeWeChat:
    """A threaded HTTP server on 127.0.0.1 answering per-route canned responses."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            """Record the request and answer from the route table."""

            protocol_version = "HTTP/1.1"

            def _handle(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                record = {"method": self.command, "path": parts.path,
                          "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                          "body": body, "headers": dict(self.headers)}
                fake.requests.append(record)
                route = fake.routes.get((self.command, parts.path))
                if route is None:
                    status, payload, delay = 404, b"no route", 0
                else:
                    status, payload, delay = route(record) if callable(route) else route
                if delay:
                    time.sleep(delay)
                if not isinstance(payload, bytes):
                    payload = json.dumps(payload, ensure_ascii=False).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; encoding=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout tests)

            do_GET = _handle
            do_POST = _handle

            def log_message(self, *args):
                """Keep test output quiet."""

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                """Clients hanging up mid-answer are expected in timeout tests."""

        self.server = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def route(self, method, path, payload, status=200, delay=0):
        """Answer ``payload`` (dict → JSON, bytes as is) to method+path."""
        self.routes[(method, path)] = (status, payload, delay)

    @property
    def last(self):
        """The most recent request."""
        return self.requests[-1]

    def close(self):
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    """A fresh local WeChat stand-in for each test."""
    server = FakeWeChat()
    yield server
    server.close()


@pytest.fixture
def session():
    """A pooled session from the package factory."""
    s = make_session(pool_size=8)
    yield s
    s.close()


def closed_port() -> int:
    """A local port nobody listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def assert_no_secrets(*texts):
    """None of the texts contains the token or the secret."""
    for text in texts:
        assert TOKEN not in text and SECRET not in text, text


# -- Official Account ---------------------------------------------------------------------------

def test_stable_token(fake, session):
    """POST /cgi-bin/stable_token with a JSON body; returns (token, expires_in)."""
    fake.route("POST", "/cgi-bin/stable_token", {"access_token": TOKEN, "expires_in": 7200})
    client = MpClient(fake.base_url, session=session)
    assert client.stable_token("wx123", SECRET) == (TOKEN, 7200)
    sent = json.loads(fake.last["body"])
    assert sent == {"grant_type": "client_credential", "appid": "wx123", "secret": SECRET,
                    "force_refresh": False}
    assert fake.last["headers"]["Content-Type"].startswith("application/json")
    client.stable_token("wx123", SECRET, force_refresh=True)
    assert json.loads(fake.last["body"])["force_refresh"] is True


def test_legacy_token(fake, session):
    """GET /cgi-bin/token with query parameters."""
    fake.route("GET", "/cgi-bin/token", {"access_token": TOKEN, "expires_in": "7200"})
    assert MpClient(fake.base_url, session=session).legacy_token("wx1", SECRET) == (TOKEN, 7200)
    assert fake.last["query"] == {"grant_type": "client_credential", "appid": "wx1", "secret": SECRET}


def test_token_answer_without_token_is_bad_response(fake, session):
    """An answer without access_token is not silently accepted."""
    fake.route("POST", "/cgi-bin/stable_token", {"errcode": 0, "expires_in": 7200})
    with pytest.raises(WeChatTransportError) as info:
        MpClient(fake.base_url, session=session).stable_token("wx1", SECRET)
    assert info.value.kind == "bad_response"


def test_ip_whitelist_refusal_on_stable_token(fake, session, caplog):
    """40164 on stable_token: diagnosis with the IP and the console page; nothing secret leaks."""
    caplog.set_level(logging.DEBUG)
    fake.route("POST", "/cgi-bin/stable_token", {
        "errcode": 40164,
        "errmsg": "invalid ip 120.244.112.8 ipv6 ::ffff:120.244.112.8, not in whitelist rid: 5fa26c60-1a0ebdd5"})
    with pytest.raises(WeChatAPIError) as info:
        MpClient(fake.base_url, session=session).stable_token("wx1", SECRET)
    exc = info.value
    assert exc.errcode == 40164 and not exc.transient
    assert exc.diagnosis.ip == "120.244.112.8" and "IP白名单" in exc.diagnosis.message("zh")
    assert_no_secrets(str(exc), repr(exc), caplog.text, "".join(traceback.format_exception(exc)))


def test_40001_means_secret_at_token_time_and_token_otherwise(fake, session):
    """The same errcode is diagnosed by where it happened."""
    fake.route("POST", "/cgi-bin/stable_token", {"errcode": 40001, "errmsg": "invalid credential"})
    fake.route("POST", "/cgi-bin/message/template/send",
               {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"})
    client = MpClient(fake.base_url, session=session)
    with pytest.raises(WeChatAPIError) as at_token:
        client.stable_token("wx1", SECRET)
    assert at_token.value.diagnosis.kind == "secret" and not at_token.value.token_error
    with pytest.raises(WeChatAPIError) as at_send:
        client.send_template(TOKEN, "openid", "tpl", {"a": "b"})
    assert at_send.value.token_error and at_send.value.transient


def test_send_template(fake, session):
    """Template send: data wrapped as {"value": ...}, raw UTF-8 body, token in the query, msgid back."""
    fake.route("POST", "/cgi-bin/message/template/send",
               {"errcode": 0, "errmsg": "ok", "msgid": 3717005636572528642})
    client = MpClient(fake.base_url, session=session)
    msgid = client.send_template(TOKEN, "OPENID", "TPL", {"keyword1": "巧克力", "keyword2": "39.8元"},
                                 url="http://example.com/x", client_msg_id="delivery-42")
    assert msgid == 3717005636572528642
    assert fake.last["query"] == {"access_token": TOKEN}
    assert "巧克力".encode() in fake.last["body"]
    assert json.loads(fake.last["body"]) == {
        "touser": "OPENID", "template_id": "TPL", "url": "http://example.com/x",
        "client_msg_id": "delivery-42",
        "data": {"keyword1": {"value": "巧克力"}, "keyword2": {"value": "39.8元"}}}


def test_send_template_without_optional_fields(fake, session):
    """No url or client_msg_id keys when not given."""
    fake.route("POST", "/cgi-bin/message/template/send", {"errcode": 0, "errmsg": "ok", "msgid": "17"})
    assert MpClient(fake.base_url, session=session).send_template(TOKEN, "o", "t", {"k": "v"}) == 17
    assert set(json.loads(fake.last["body"])) == {"touser", "template_id", "data"}


def test_send_template_unfollowed_user_is_permanent(fake, session):
    """43004 fails at once with a readable reason."""
    fake.route("POST", "/cgi-bin/message/template/send", {"errcode": 43004, "errmsg": "require subscribe rid: 1"})
    with pytest.raises(WeChatAPIError) as info:
        MpClient(fake.base_url, session=session).send_template(TOKEN, "o", "t", {"k": "v"})
    assert not info.value.transient and info.value.diagnosis.kind == "user"
    assert info.value.errmsg == "require subscribe rid: 1"


def test_create_qrcode(fake, session):
    """QR_STR_SCENE with the scene wrapped correctly; ticket/url/expire_seconds returned."""
    fake.route("POST", "/cgi-bin/qrcode/create", {"ticket": "gQH47joAAAAAAAAAASxodHRw", "expire_seconds": 600,
                                                  "url": "http://weixin.qq.com/q/kZgfwMTm72WWPkovabbI"})
    result = MpClient(fake.base_url, session=session).create_qrcode(TOKEN, "bind_abc", 600)
    assert result == {"ticket": "gQH47joAAAAAAAAAASxodHRw", "url": "http://weixin.qq.com/q/kZgfwMTm72WWPkovabbI",
                      "expire_seconds": 600}
    assert json.loads(fake.last["body"]) == {"expire_seconds": 600, "action_name": "QR_STR_SCENE",
                                             "action_info": {"scene": {"scene_str": "bind_abc"}}}


@pytest.mark.parametrize("scene,expire", [("", 60), ("x" * 65, 60), ("ok", 0), ("ok", 2_592_001), ("ok", "x")])
def test_create_qrcode_local_validation(fake, session, scene, expire):
    """Out-of-range scenes and lifetimes are refused before any call."""
    with pytest.raises(WeChatRequestError):
        MpClient(fake.base_url, session=session).create_qrcode(TOKEN, scene, expire)
    assert fake.requests == []


def test_get_all_private_template_and_keys(fake, session):
    """Template list, and the keys pulled out of its content."""
    content = "{{result.DATA}}\n\n领奖金额:{ {withdrawMoney.DATA} }\n领奖 时间:{{ withdrawTime.DATA }}\n{{result.DATA}}"
    fake.route("GET", "/cgi-bin/template/get_all_private_template", {"template_list": [
        {"template_id": "iPk5sOIt5X_flOVKn5GrTFpncEYTojx6ddbt8WYoV5s", "title": "领取奖金提醒",
         "content": content, "example": "..."}]})
    templates = MpClient(fake.base_url, session=session).get_all_private_template(TOKEN)
    assert templates[0]["title"] == "领取奖金提醒"
    assert template_keys(templates[0]["content"]) == ["result", "withdrawMoney", "withdrawTime"]
    assert template_keys("{{thing1.DATA}} {{time2.DATA}} {{character_string3.DATA}}") == \
        ["thing1", "time2", "character_string3"]
    assert template_keys(None) == [] and template_keys("{{first.data}}") == []


def test_base_url_with_prefix_and_trailing_slash(fake, session):
    """A simulator mounted under a path works; a trailing slash is tolerated."""
    fake.route("GET", "/simulator/mp/cgi-bin/token", {"access_token": "T", "expires_in": 7200})
    assert MpClient(fake.base_url + "/simulator/mp/", session=session).legacy_token("a", "b") == ("T", 7200)


# -- WeCom ----------------------------------------------------------------------------------------

def test_work_get_token(fake, session):
    """GET /cgi-bin/gettoken with corpid and corpsecret."""
    fake.route("GET", "/cgi-bin/gettoken", {"errcode": 0, "errmsg": "ok", "access_token": TOKEN, "expires_in": 7200})
    assert WorkClient(fake.base_url, session=session).get_token("ww1", SECRET) == (TOKEN, 7200)
    assert fake.last["query"] == {"corpid": "ww1", "corpsecret": SECRET}


def test_work_trusted_ip_refusal(fake, session, caplog):
    """60020 names 企业可信IP and the refused IP; the corpsecret appears nowhere."""
    caplog.set_level(logging.DEBUG)
    fake.route("GET", "/cgi-bin/gettoken", {"errcode": 60020, "errmsg": (
        "not allow to access from your ip, hint: [1706848717432011565347844], from ip: 203.0.113.7, "
        "more info at https://open.work.weixin.qq.com/devtool/query?e=60020")})
    with pytest.raises(WeChatAPIError) as info:
        WorkClient(fake.base_url, session=session).get_token("ww1", SECRET)
    assert info.value.diagnosis.ip == "203.0.113.7" and "企业可信IP" in info.value.diagnosis.message("zh")
    assert_no_secrets(str(info.value), caplog.text)


def test_work_wrong_secret(fake, session):
    """WeCom 40001 at gettoken is the corpsecret."""
    fake.route("GET", "/cgi-bin/gettoken", {"errcode": 40001, "errmsg": "invalid secret"})
    with pytest.raises(WeChatAPIError) as info:
        WorkClient(fake.base_url, session=session).get_token("ww1", SECRET)
    assert info.value.diagnosis.kind == "secret" and "Secret" in info.value.diagnosis.message("en")


def test_work_send_message(fake, session):
    """Users joined with '|', numbers as numbers, duplicate check on; invaliduser split."""
    fake.route("POST", "/cgi-bin/message/send", {"errcode": 0, "errmsg": "ok", "invaliduser": "bob|carol",
                                                 "msgid": "xxxx"})
    answer = WorkClient(fake.base_url, session=session).send_message(
        TOKEN, "1000002", ["alice", "Bob", "carol"], "text", {"content": "磁盘告警"})
    assert answer["invaliduser"] == ["bob", "carol"] and answer["unlicenseduser"] == []
    assert answer["msgid"] == "xxxx"
    assert fake.last["query"] == {"access_token": TOKEN}
    assert json.loads(fake.last["body"]) == {
        "touser": "alice|Bob|carol", "msgtype": "text", "agentid": 1000002, "text": {"content": "磁盘告警"},
        "safe": 0, "enable_duplicate_check": 1, "duplicate_check_interval": 1800}


def test_work_send_message_options(fake, session):
    """Duplicate check off, custom interval, safe mode."""
    fake.route("POST", "/cgi-bin/message/send", {"errcode": 0, "errmsg": "ok"})
    answer = WorkClient(fake.base_url, session=session).send_message(
        TOKEN, 5, ["u"], "textcard", {"title": "t", "description": "d", "url": "https://x"},
        enable_duplicate_check=False, duplicate_check_interval=600, safe=1)
    assert answer["invaliduser"] == []
    body = json.loads(fake.last["body"])
    assert body["enable_duplicate_check"] == 0 and body["duplicate_check_interval"] == 600
    assert body["safe"] == 1 and body["textcard"]["title"] == "t"


@pytest.mark.parametrize("users,interval", [
    ([f"u{i}" for i in range(1001)], 1800), ([], 1800), ("alice", 1800), (["a|b"], 1800), ([""], 1800),
    (["a"], 0), (["a"], 14401),
])
def test_work_send_message_local_refusals(fake, session, users, interval):
    """More than 1000 users, none, a bare string, ids with '|', bad interval: refused locally."""
    with pytest.raises(WeChatRequestError):
        WorkClient(fake.base_url, session=session).send_message(
            TOKEN, 1, users, "text", {"content": "x"}, duplicate_check_interval=interval)
    assert fake.requests == []


@pytest.mark.parametrize("msgtype", ["", "touser", "agentid", "Text!", None])
def test_work_send_message_bad_msgtype(fake, session, msgtype):
    """The msgtype doubles as a body key, so it cannot name another field."""
    with pytest.raises(WeChatRequestError):
        WorkClient(fake.base_url, session=session).send_message(TOKEN, 1, ["u"], msgtype, {"content": "x"})
    assert fake.requests == []


def test_work_send_message_1000_users_ok(fake, session):
    """Exactly 1000 users is allowed."""
    fake.route("POST", "/cgi-bin/message/send", {"errcode": 0, "errmsg": "ok", "invaliduser": ""})
    WorkClient(fake.base_url, session=session).send_message(
        TOKEN, 1, [f"u{i}" for i in range(1000)], "text", {"content": "x"})
    assert json.loads(fake.last["body"])["touser"].count("|") == 999


def test_work_all_invalid(fake, session):
    """81013 is permanent and explains visibility."""
    fake.route("POST", "/cgi-bin/message/send", {"errcode": 81013, "errmsg": "user & party & tag all invalid",
                                                 "invaliduser": "x"})
    with pytest.raises(WeChatAPIError) as info:
        WorkClient(fake.base_url, session=session).send_message(TOKEN, 1, ["x"], "text", {"content": "x"})
    assert info.value.errcode == 81013 and not info.value.transient


@pytest.mark.parametrize("answer,expected", [
    ({"errcode": 0, "errmsg": "ok", "userid": "zhangsan", "user_ticket": "t"}, {"userid": "zhangsan"}),
    ({"errcode": 0, "errmsg": "ok", "openid": "oABC", "external_userid": "wm1"}, {"openid": "oABC"}),
    ({"errcode": 0, "errmsg": "ok", "UserId": "LEGACY"}, {"userid": "LEGACY"}),
])
def test_work_get_user_info(fake, session, answer, expected):
    """Members give userid, non-members openid."""
    fake.route("GET", "/cgi-bin/auth/getuserinfo", answer)
    assert WorkClient(fake.base_url, session=session).get_user_info(TOKEN, "CODE") == expected
    assert fake.last["query"] == {"access_token": TOKEN, "code": "CODE"}


def test_work_get_user_info_invalid_code(fake, session):
    """40029: an invalid or reused code."""
    fake.route("GET", "/cgi-bin/auth/getuserinfo", {"errcode": 40029, "errmsg": "invalid code"})
    with pytest.raises(WeChatAPIError) as info:
        WorkClient(fake.base_url, session=session).get_user_info(TOKEN, "CODE")
    assert info.value.errcode == 40029


def test_work_get_agent(fake, session):
    """GET /cgi-bin/agent/get returns the parsed settings."""
    fake.route("GET", "/cgi-bin/agent/get", {"errcode": 0, "errmsg": "ok", "agentid": 1000002,
                                            "allow_userinfos": {"user": [{"userid": "zhangsan"}]}, "close": 0})
    agent = WorkClient(fake.base_url, session=session).get_agent(TOKEN, "1000002")
    assert agent["allow_userinfos"]["user"][0]["userid"] == "zhangsan"
    assert fake.last["query"] == {"access_token": TOKEN, "agentid": "1000002"}


# -- transport failures ----------------------------------------------------------------------

def test_read_timeout(fake, session, caplog):
    """A server slower than the read timeout gives a 'timeout' transport error, promptly."""
    caplog.set_level(logging.DEBUG)
    fake.route("POST", "/cgi-bin/message/template/send", {"errcode": 0, "msgid": 1}, delay=1.0)
    client = MpClient(fake.base_url, session=session, timeout=(1.0, 0.25))
    started = time.monotonic()
    with pytest.raises(WeChatTransportError) as info:
        client.send_template(TOKEN, "o", "t", {"k": "v"})
    assert time.monotonic() - started < 0.9
    assert info.value.kind == "timeout" and info.value.transient
    assert_no_secrets(str(info.value), caplog.text, "".join(traceback.format_exception(info.value)))


def test_session_default_timeout_applies(fake):
    """With no client timeout, the session's default timeout is used (never 'wait forever')."""
    fake.route("GET", "/cgi-bin/agent/get", {"errcode": 0}, delay=1.0)
    slow_session = make_session(timeout=(1.0, 0.25))
    try:
        with pytest.raises(WeChatTransportError) as info:
            WorkClient(fake.base_url, session=slow_session).get_agent(TOKEN, 1)
        assert info.value.kind == "timeout"
    finally:
        slow_session.close()


def test_connection_refused(session, caplog):
    """A closed port gives 'refused'; the URL's token is not in the error or the logs."""
    caplog.set_level(logging.DEBUG)
    client = MpClient(f"http://127.0.0.1:{closed_port()}", session=session)
    with pytest.raises(WeChatTransportError) as info:
        client.send_template(TOKEN, "o", "t", {"k": "v"})
    exc = info.value
    assert exc.kind == "refused" and exc.transient
    assert "refused" in exc.diagnosis.message("en")
    assert exc.__cause__ is None
    assert_no_secrets(str(exc), repr(exc), caplog.text, "".join(traceback.format_exception(exc)))
    with pytest.raises(WeChatTransportError) as at_token:
        client.legacy_token("wx1", SECRET)
    assert_no_secrets(str(at_token.value), caplog.text)


def test_dns_failure(session):
    """A host that cannot resolve gives 'dns'."""
    client = WorkClient("http://wechat-test-host.invalid", session=session, timeout=(2, 2))
    with pytest.raises(WeChatTransportError) as info:
        client.get_token("ww1", SECRET)
    assert info.value.kind == "dns"
    assert "DNS" in info.value.diagnosis.message("en")
    assert_no_secrets(str(info.value))


def test_non_json_answer(fake, session):
    """An HTML error page with status 200 is a bad_response, not a crash."""
    fake.route("POST", "/cgi-bin/stable_token", b"<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(WeChatTransportError) as info:
        MpClient(fake.base_url, session=session).stable_token("wx1", SECRET)
    assert info.value.kind == "bad_response" and info.value.transient


@pytest.mark.parametrize("payload", [b"[1,2]", b"\xff\xfe", b"", b'{"errcode": "x"}', b"[" * 100_000])
def test_odd_json_answers(fake, session, payload):
    """JSON that is not an object, undecodable bytes, empty body, junk errcode, absurd nesting."""
    fake.route("GET", "/cgi-bin/agent/get", payload)
    with pytest.raises(WeChatTransportError) as info:
        WorkClient(fake.base_url, session=session).get_agent(TOKEN, 1)
    assert info.value.kind == "bad_response"


@pytest.mark.parametrize("status,transient", [(502, True), (503, True), (500, True), (404, False), (429, True)])
def test_http_error_status(fake, session, status, transient):
    """HTTP errors carry the status; 5xx are transient, a 404 (wrong base URL) is not."""
    fake.route("GET", "/cgi-bin/token", b"oops", status=status)
    with pytest.raises(WeChatTransportError) as info:
        MpClient(fake.base_url, session=session).legacy_token("wx1", SECRET)
    assert info.value.kind == "http" and info.value.status == status
    assert info.value.transient is transient
    assert_no_secrets(str(info.value))


def test_api_error_log_and_message_redacted(fake, session, caplog):
    """Even if WeChat echoed the secret into errmsg, neither logs nor exception show it."""
    caplog.set_level(logging.DEBUG)
    fake.route("GET", "/cgi-bin/token", {"errcode": 40125, "errmsg": f"invalid appsecret secret={SECRET} rid: 1"})
    with pytest.raises(WeChatAPIError) as info:
        MpClient(fake.base_url, session=session).legacy_token("wx1", SECRET)
    assert_no_secrets(str(info.value), info.value.errmsg, info.value.diagnosis.message("en"), caplog.text)
    # urllib3 logged the request line (with the secret in its query), redacted rather than dropped.
    lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert any("/cgi-bin/token" in line and "secret=***" in line for line in lines)


def test_session_factory():
    """Pool size, default timeout and TLS verification of the shared factory."""
    s = make_session(pool_size=7)
    try:
        adapter = s.get_adapter("https://api.weixin.qq.com/")
        assert adapter._pool_maxsize == 7 and adapter.max_retries.total == 0
        assert s.verify is True and s.default_timeout == DEFAULT_TIMEOUT == (5.0, 10.0)
        assert make_session().get_adapter("https://x/")._pool_maxsize == 32
    finally:
        s.close()
    with pytest.raises(ValueError):
        make_session(pool_size=0)


def test_concurrent_calls_share_the_pool(fake):
    """Calls in parallel threads run concurrently over one session (the fan-out case)."""
    fake.route("POST", "/cgi-bin/message/template/send", {"errcode": 0, "msgid": 1}, delay=0.2)
    s = make_session(pool_size=16)
    client = MpClient(fake.base_url, session=s)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda i: client.send_template(TOKEN, f"o{i}", "t", {"k": "v"}), range(16)))
        elapsed = time.monotonic() - started
    finally:
        s.close()
    assert results == [1] * 16
    assert elapsed < 1.6  # one after another would take 3.2 s


def test_proxy_settings_from_the_environment_hold_for_every_call(fake, monkeypatch):
    """HTTP(S)_PROXY and NO_PROXY apply to each host, call after call (they are looked up once per host)."""
    monkeypatch.setenv("HTTP_PROXY", fake.base_url)  # the local server plays the proxy
    monkeypatch.setenv("NO_PROXY", "direct-host.invalid")
    fake.route("GET", "/cgi-bin/token", {"access_token": TOKEN, "expires_in": 7200})
    session = make_session()
    try:
        through_proxy = MpClient("http://wechat-test-host.invalid", session=session)
        for _ in range(3):
            assert through_proxy.legacy_token("wx1", SECRET) == (TOKEN, 7200)
            assert fake.last["headers"]["Host"] == "wechat-test-host.invalid"
        assert len(fake.requests) == 3
        direct = MpClient("http://direct-host.invalid", session=session, timeout=(2, 2))
        for _ in range(2):  # not through the proxy: the name does not resolve
            with pytest.raises(WeChatTransportError) as info:
                direct.legacy_token("wx1", SECRET)
            assert info.value.kind == "dns"
        assert len(fake.requests) == 3
    finally:
        session.close()
