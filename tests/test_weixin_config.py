"""``flask --app wsgi weixin-config FILE.json``: formats, live checks against the simulator, atomic storage."""
import json

import pytest
from sqlalchemy import func, select

from webapp import channel
from webapp.extensions import db
from webapp.models import AuditEntry, ChannelConfig
from webapp.simulator.world import (MP_APPID, MP_SECRET, QY_AGENTID, QY_CORPID, QY_CORPSECRET,
                                    TEMPLATE_NOTIFICATION_ID)

MP = {"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": "Token123",
      "wx_template_id": TEMPLATE_NOTIFICATION_ID}
QY = {"wx_type": "qywx", "wx_qy_corpid": QY_CORPID, "wx_qy_corpsecret": QY_CORPSECRET, "wx_qy_agentid": QY_AGENTID}


@pytest.fixture
def load(sim_app, tmp_path):
    runner = sim_app.test_cli_runner()

    def run(config, *options):
        path = tmp_path / "weixin.json"
        path.write_text(json.dumps(config) if not isinstance(config, str) else config)
        return runner.invoke(args=["weixin-config", str(path), *options])

    return run


def stored(app):
    with app.app_context():
        return channel.load()


def test_official_account_is_checked_and_stored_encrypted(load, sim_app, simulator):
    result = load(MP)
    assert result.exit_code == 0, result.output
    assert "Stored the Official Account configuration" in result.output
    config = stored(sim_app)
    assert config.wx_secret == MP_SECRET and config.wx_template_fields["message"] == "keyword1"
    with sim_app.app_context():
        row = db.session.scalar(select(ChannelConfig))
        assert MP_SECRET not in (row.wx_secret_enc or "") and "Token123" not in (row.wx_token_enc or "")
        audit = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "channel.configure"))
        assert MP_SECRET not in json.dumps(audit.detail) and audit.actor == "cli"
    assert simulator.calls("stable_token") == 1 and simulator.calls("template_list") == 1


def test_wecom_is_checked_and_stored(load, sim_app):
    result = load({**QY, "wx_type": "qy", "wx_qy_agentid": str(QY_AGENTID)})  # alias and numeric string
    assert result.exit_code == 0, result.output
    assert "visible_users: 3" in result.output
    assert stored(sim_app).wx_type == "qywx" and stored(sim_app).wx_qy_agentid == QY_AGENTID


def test_a_wrong_secret_says_it_is_the_secret_and_stores_nothing(load, sim_app):
    result = load({**MP, "wx_secret": "f" * 32})
    assert result.exit_code != 0 and "nothing was stored" in result.output
    assert "AppSecret" in result.output and "[wx_secret]" in result.output
    assert stored(sim_app) is None


def test_a_wrong_wecom_secret_says_it_is_the_secret(load, sim_app):
    result = load({**QY, "wx_qy_corpsecret": "x" * 43})
    assert result.exit_code != 0 and "[wx_qy_corpsecret]" in result.output and "Secret" in result.output


def test_ip_refusal_prints_the_ip_and_where_to_whitelist_it(load, sim_app, simulator):
    simulator.control("settings", {"mp_ip_check": True, "mp_ip_whitelist": []})
    result = load(MP)
    assert result.exit_code != 0 and "127.0.0.1" in result.output and "IP白名单" in result.output
    simulator.control("settings", {"qy_ip_check": True, "qy_ip_whitelist": []})
    result = load(QY)
    assert result.exit_code != 0 and "127.0.0.1" in result.output and "企业可信IP" in result.output
    assert stored(sim_app) is None


def test_an_unknown_template_is_named(load, sim_app):
    result = load({**MP, "wx_template_id": "TM00015-not-mine"})
    assert result.exit_code != 0 and "TM00015-not-mine" in result.output and "[wx_template_id]" in result.output


def test_an_application_nobody_can_see_is_refused(load, sim_app, simulator):
    simulator.control("qy/apps", {"agentid": QY_AGENTID, "allow_users": []})
    result = load(QY)
    assert result.exit_code != 0 and "可见范围" in result.output


@pytest.mark.parametrize("config, key", [
    ({**MP, "wx_app_id": "wx123"}, "wx_app_id"),
    ({**MP, "wx_secret": "short"}, "wx_secret"),
    ({**MP, "wx_token": "no spaces!"}, "wx_token"),
    ({**MP, "wx_token": "ab"}, "wx_token"),
    ({**MP, "wx_encoding_aes_key": "tooshort"}, "wx_encoding_aes_key"),
    ({**MP, "wx_encrypt_mode": "safe"}, "wx_encoding_aes_key"),
    ({**MP, "wx_template_fields": {"heading": "first"}}, "wx_template_fields"),
    ({**MP, "wx_tempalte_id": "typo"}, "wx_tempalte_id"),
    ({**QY, "wx_qy_agentid": "abc"}, "wx_qy_agentid"),
    ({**QY, "wx_qy_msgtype": "news"}, "wx_qy_msgtype"),
    ({"wx_type": "sms"}, "wx_type"),
])
def test_invalid_values_are_named_and_nothing_is_checked_or_stored(load, sim_app, simulator, config, key):
    result = load(config)
    assert result.exit_code != 0 and key in result.output and "nothing was stored" in result.output
    assert simulator.calls("stable_token") == 0 and stored(sim_app) is None


def test_not_json(load):
    result = load("{not json")
    assert result.exit_code != 0 and "not valid JSON" in result.output


def test_no_check_stores_without_calling_wechat(load, sim_app, simulator):
    result = load({**MP, "wx_secret": "a" * 32}, "--no-check")
    assert result.exit_code == 0 and simulator.calls("stable_token") == 0
    assert stored(sim_app).wx_secret == "a" * 32


def test_a_failed_check_keeps_the_previous_configuration(load, sim_app):
    assert load(MP).exit_code == 0
    assert load({**MP, "wx_secret": "e" * 32}).exit_code != 0
    assert stored(sim_app).wx_secret == MP_SECRET
    with sim_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ChannelConfig)) == 1


def test_secrets_left_out_keep_their_stored_values(load, sim_app):
    assert load({**MP, "wx_encoding_aes_key": "a" * 43}).exit_code == 0
    assert load({**MP, "wx_secret": "", "wx_encoding_aes_key": ""}).exit_code == 0
    config = stored(sim_app)
    assert config.wx_secret == MP_SECRET and config.wx_encoding_aes_key == "a" * 43


def test_changing_the_aes_key_keeps_the_old_one_for_rotation(load, sim_app):
    load({**MP, "wx_encoding_aes_key": "a" * 43})
    load({**MP, "wx_encoding_aes_key": "b" * 43})
    config = stored(sim_app)
    assert config.wx_encoding_aes_key == "b" * 43 and config.wx_previous_encoding_aes_key == "a" * 43
