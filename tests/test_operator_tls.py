"""The wizard's callback test against a real TLS server whose certificate comes from a company CA.

A CA and a server certificate for 127.0.0.1 are made with ``cryptography``; the server is werkzeug's,
speaking TLS with Python's ``ssl``, answering WeChat's URL check with its echo.
"""
from __future__ import annotations

import contextlib
import datetime
import ipaddress
import ssl
import threading
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server

from webapp.setup import wizard_services as services

CALLBACK = "/console/user_center/weixin/mp/callback/"
TOKEN = "CompanyCaToken1"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def company_ca(tmp_path_factory) -> dict[str, Path]:
    """A company root CA and a server certificate it signed for 127.0.0.1: paths of ca.pem, cert.pem, key.pem."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Example Corp Root CA")).issuer_name(_name("Example Corp Root CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("notify.internal.example")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("company-ca")
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def echo(environ, start_response):
    """The service's answer to WeChat's URL check: the echostr, byte for byte."""
    body = parse_qs(environ.get("QUERY_STRING", "")).get("echostr", [""])[0].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@contextlib.contextmanager
def tls_server(company_ca):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(company_ca["cert"], company_ca["key"])
    server = make_server("127.0.0.1", 0, echo, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_without_a_ca_bundle_the_company_certificate_fails_and_the_sentence_says_what_to_set(app, company_ca):
    with tls_server(company_ca) as base:
        result = services.probe_callback_url(base + CALLBACK, TOKEN)
    assert result["kind"] == "tls" and not result["ok"], result
    with app.test_request_context():
        sentence = services.callback_sentence(result, "http://127.0.0.1:8000" + CALLBACK)
    assert "CALLBACK_TEST_CA_BUNDLE" in sentence and "publicly trusted certificate" in sentence


def test_with_the_company_ca_the_test_passes_and_says_wechat_needs_a_public_certificate(make_app, company_ca):
    app = make_app(CALLBACK_TEST_CA_BUNDLE=str(company_ca["ca"]))
    with tls_server(company_ca) as base, app.test_request_context(base_url="http://127.0.0.1:8000/"):
        test = services.run_callback_test(base + CALLBACK, TOKEN)
        public = test["results"][0]
        assert test["passed"] and public["ok"] and public["private_ca"] is True, public
        sentence = services.callback_sentence(public, test["service_url"])
    assert "answered WeChat's check correctly" in sentence and "CALLBACK_TEST_CA_BUNDLE" in sentence
    assert "publicly trusted" in sentence and "http:// on port 80" in sentence
    with app.test_request_context(headers={"Accept-Language": "zh"}):
        assert "公开受信任" in services.callback_sentence(public, test["service_url"])


def test_a_publicly_trusted_or_plain_address_is_not_marked(make_app, company_ca):
    """The company CA is only a fallback: an address the public CAs (or plain HTTP) serve stays unmarked."""
    from tests.livesrv import serve

    with serve(echo) as plain:
        result = services.probe_callback_url(plain + CALLBACK, TOKEN, ca_bundle=str(company_ca["ca"]))
    assert result["ok"] and "private_ca" not in result


def test_an_unreadable_ca_bundle_is_named(app, company_ca, tmp_path):
    missing = tmp_path / "no-such-ca.pem"
    with tls_server(company_ca) as base:
        result = services.probe_callback_url(base + CALLBACK, TOKEN, ca_bundle=str(missing))
    assert result["kind"] == "ca_bundle" and not result["ok"]
    with app.test_request_context():
        assert str(missing) in services.callback_sentence(result, "http://127.0.0.1:8000" + CALLBACK)


def test_the_setting_comes_from_the_environment(monkeypatch, tmp_path, company_ca):
    from tests.conftest import TEST_SECRET_KEY
    from webapp import create_app

    monkeypatch.setenv("FLASK_CALLBACK_TEST_CA_BUNDLE", str(company_ca["ca"]))
    monkeypatch.setenv("FLASK_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("FLASK_DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite3'}")
    app = create_app()
    assert app.config["CALLBACK_TEST_CA_BUNDLE"] == str(company_ca["ca"])
