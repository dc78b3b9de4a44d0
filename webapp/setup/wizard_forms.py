"""The set-up wizard's forms: one per step, each validated on the server.

Field names are the configuration keys of the contract (``wx_app_id``, ``wx_secret``, ...). Secret
fields may be left blank when the draft already holds a value: the value is then kept.
"""
from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, RadioField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, ValidationError

from webapp.wechat import ids
from webapp.wechat.crypto import validate_encoding_aes_key, validate_token

try:  # WTForms 3.3 names choices; plain (value, label) tuples are deprecated there
    from wtforms.fields.choices import SelectChoice
except ImportError:  # pragma: no cover - older WTForms
    def SelectChoice(value, label=None):  # noqa: N802
        return (value, label if label is not None else value)



def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _choices(*pairs) -> list:
    return [SelectChoice(value, label) for value, label in pairs]


def _value(choice) -> str:
    return choice.value if hasattr(choice, "value") else choice[0]


class OneOf:
    """The submitted value must be one of the field's choices; ``message`` says what to do otherwise.

    (The fields are declared with ``validate_choice=False``, so that this sentence, not WTForms' generic
    "Not a valid choice", is what the administrator reads.)
    """

    def __init__(self, message):
        self.message = message

    def __call__(self, form, field):
        if field.data not in [_value(c) for c in field.choices]:
            raise ValidationError(self.message)


class ChannelForm(FlaskForm):
    """Step 1: the Official Account or WeCom."""

    wx_type = RadioField(_l("Channel"), choices=_choices(("mp", _l("WeChat Official Account (公众号)")),
                                                         ("qywx", _l("WeCom (企业微信)"))),
                         validate_choice=False, validators=[OneOf(_l("Choose the Official Account or WeCom."))])
    submit = SubmitField(_l("Next"))


class CheckAgainForm(FlaskForm):
    """Steps whose check is shown as last run (prerequisites, trusted domain): check again, or check and go on."""

    recheck = SubmitField(_l("Check again"))
    submit = SubmitField(_l("Next"))


class _KeysForm(FlaskForm):
    """Step 3: the keys. ``have`` names the secrets the draft already holds (they may then be left blank)."""

    submit = SubmitField(_l("Check the keys and continue"))
    recheck = SubmitField(_l("Check again"))

    def __init__(self, *args, have: set[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.have = have or set()

    def _secret(self, field, pattern, missing, malformed):
        """A secret: blank keeps the draft's value (if any), else it must match ``pattern``."""
        if not field.data:
            if field.name not in self.have:
                raise ValidationError(missing)
        elif not pattern.fullmatch(field.data):
            raise ValidationError(malformed)


class MpKeysForm(_KeysForm):
    """Step 3 (Official Account): AppID, AppSecret, Token, EncodingAESKey and the encryption mode."""

    wx_app_id = StringField(_l("AppID (开发者ID)"), filters=[_strip], validators=[DataRequired(
        message=_l("Enter the AppID: 开发 → 基本配置 → 开发者ID(AppID)."))])
    wx_secret = PasswordField(_l("AppSecret (开发者密码)"), filters=[_strip])
    wx_token = StringField(_l("Token"), filters=[_strip], validators=[DataRequired(
        message=_l("Enter a Token of 3 to 32 letters or digits, or press Generate."))])
    wx_encoding_aes_key = StringField(_l("EncodingAESKey (消息加解密密钥)"), filters=[_strip])
    wx_encrypt_mode = RadioField(_l("Message encryption (消息加解密方式)"), default="safe", choices=_choices(
        ("plain", _l("Plain text (明文模式)")),
        ("compatible", _l("Compatible (兼容模式)")),
        ("safe", _l("Safe (安全模式, recommended)")),
    ), validate_choice=False, validators=[OneOf(_l("Choose the encryption mode: the same as on WeChat's 服务器配置 page."))])

    def validate_wx_app_id(self, field):
        if not ids.APPID_RE.fullmatch(field.data or ""):
            raise ValidationError(_l("The AppID is \"wx\" followed by 16 lower-case letters and digits: copy it "
                                     "from 开发 → 基本配置 → 开发者ID(AppID)."))

    def validate_wx_secret(self, field):
        self._secret(field, ids.APP_SECRET_RE,
                     _l("Enter the AppSecret: 开发 → 基本配置 → 开发者密码(AppSecret). WeChat shows it only once; if "
                        "nobody kept it, reset it there."),
                     _l("The AppSecret is 32 letters a-f and digits: copy it again from 开发 → 基本配置 → "
                        "开发者密码(AppSecret)."))

    def validate_wx_token(self, field):
        if not validate_token(field.data):
            raise ValidationError(_l("The Token is 3 to 32 letters or digits (no spaces or symbols), as WeChat's "
                                     "服务器配置 page requires. Press Generate for a good one."))

    def validate_wx_encoding_aes_key(self, field):
        if field.data:
            if not validate_encoding_aes_key(field.data):
                raise ValidationError(_l("The EncodingAESKey is exactly 43 letters and digits: press Generate here "
                                         "or 随机生成 on WeChat's 服务器配置 page, and use the same key on both sides."))
        elif self.wx_encrypt_mode.data in ("compatible", "safe") and "wx_encoding_aes_key" not in self.have:
            raise ValidationError(_l("Compatible and safe mode need the EncodingAESKey: press Generate (or choose "
                                     "plain text mode)."))


class QyKeysForm(_KeysForm):
    """Step 3 (WeCom): CorpID, the application's Secret and AgentId, and the message type."""

    wx_qy_corpid = StringField(_l("CorpID (企业ID)"), filters=[_strip], validators=[DataRequired(
        message=_l("Enter the CorpID: 我的企业 → 企业信息 → 企业ID."))])
    wx_qy_corpsecret = PasswordField(_l("Secret of the application"), filters=[_strip])
    wx_qy_agentid = StringField(_l("AgentId of the application"), filters=[_strip], validators=[DataRequired(
        message=_l("Enter the AgentId: 应用管理 → the application → AgentId."))])
    wx_qy_msgtype = RadioField(_l("Message type"), default="text", choices=_choices(
        ("text", _l("Text (all clients)")),
        ("textcard", _l("Text card with a link")),
        ("markdown", _l("Markdown (WeCom app only)")),
    ), validate_choice=False, validators=[OneOf(_l("Choose text, text card or markdown."))])

    def validate_wx_qy_corpid(self, field):
        if not ids.CORPID_RE.fullmatch(field.data or ""):
            raise ValidationError(_l("The CorpID is 18 characters starting with ww: copy it from 我的企业 → 企业信息 "
                                     "→ 企业ID."))

    def validate_wx_qy_corpsecret(self, field):
        self._secret(field, ids.CORPSECRET_RE,
                     _l("Enter the application's Secret: 应用管理 → the application → Secret (查看, sent to the WeCom "
                        "app of an administrator)."),
                     _l("The Secret is 20 to 64 letters, digits, - and _: copy it again from 应用管理 → the "
                        "application → Secret."))

    def validate_wx_qy_agentid(self, field):
        if not (field.data or "").isdigit() or not 0 < int(field.data) < 2 ** 31:
            raise ValidationError(_l("The AgentId is a number such as 1000002, shown on the application's page "
                                     "(应用管理 → the application)."))


class TemplateForm(FlaskForm):
    """Step 4 (Official Account): the template and which template key shows each part of a message.

    ``templates`` is the account's template list (as ``wizard_services.describe_template`` gives it).
    """

    wx_template_id = RadioField(_l("Template"), validate_choice=False, filters=[_strip])
    map_heading = SelectField(_l("Heading"), validate_choice=False)
    map_message = SelectField(_l("Message"), validate_choice=False)
    map_date = SelectField(_l("Date"), validate_choice=False)
    map_remark = SelectField(_l("Remark"), validate_choice=False)
    submit = SubmitField(_l("Check the template and continue"))
    refresh = SubmitField(_l("Fetch the templates again"))

    PARAMETERS = ("heading", "message", "date", "remark")

    def __init__(self, *args, templates: list[dict] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.templates = {t["template_id"]: t for t in (templates or [])}
        self.wx_template_id.choices = _choices(*[(t["template_id"], t["title"] or t["template_id"])
                                                 for t in templates or []])
        keys: list[str] = []
        for t in templates or []:
            keys.extend(k for k in t["keys"] if k not in keys)
        for parameter in self.PARAMETERS:
            self[f"map_{parameter}"].choices = _choices(("", str(_l("— not sent —"))), *[(k, k) for k in keys])

    def narrow(self) -> None:
        """Offer only the chosen template's keys in the mapping (the page's script does the same on a change)."""
        template = self.chosen
        if template is None:
            return
        for parameter in self.PARAMETERS:
            select = self[f"map_{parameter}"]
            select.choices = [c for c in select.choices if _value(c) == "" or _value(c) in template["keys"]]

    @property
    def chosen(self) -> dict | None:
        """The chosen template, or None."""
        return self.templates.get(self.wx_template_id.data or "")

    def mapping(self) -> dict[str, str]:
        """The mapping as ``wx_template_fields`` (unmapped parameters left out)."""
        return {p: self[f"map_{p}"].data for p in self.PARAMETERS if self[f"map_{p}"].data}

    def validate_wx_template_id(self, field):
        if not field.data:
            raise ValidationError(_l("Choose the template messages are sent with."))
        if not ids.TEMPLATE_ID_RE.fullmatch(field.data) or field.data not in self.templates:
            raise ValidationError(_l("This template is not among the account's templates: fetch them again, or add "
                                     "one under 广告与服务 → 模板消息 → 我的模板."))

    def validate(self, extra_validators=None):
        ok = super().validate(extra_validators)
        template = self.chosen
        if template is None:
            return False
        for parameter in self.PARAMETERS:
            value = self[f"map_{parameter}"].data
            if value and value not in template["keys"]:
                self[f"map_{parameter}"].errors.append(_l("%(key)s is not a key of this template: choose one of %(keys)s.",
                                                          key=value, keys=", ".join(template["keys"])))
                ok = False
        if not self.map_message.data:
            self.map_message.errors.append(_l("The message must be shown: map it to a template key."))
            ok = False
        elif self.map_message.data in ("first", "remark"):
            self.map_message.errors.append(_l("WeChat no longer shows %(key)s (since May 2023): map the message to "
                                              "another key, or nobody will see it.", key=self.map_message.data))
            ok = False
        return ok


class CallbackForm(FlaskForm):
    """Step 5 (Official Account): the public URL to test, and the way on."""

    public_url = StringField(_l("Public URL WeChat will call"), filters=[_strip], validators=[
        DataRequired(message=_l("Enter the public URL, starting with http:// or https://.")), Length(max=500)])
    forwarded = BooleanField(_l("WeChat's 服务器配置 already points at another server, which forwards the messages "
                                "here unchanged (transparent transmission)"))
    test = SubmitField(_l("Test the callback"))
    submit = SubmitField(_l("Next"))

    def validate_public_url(self, field):
        if not re.match(r"^https?://[^/\s]+", field.data or ""):
            raise ValidationError(_l("Enter the full address, starting with http:// or https://."))


class SaveForm(FlaskForm):
    """Step 6: write the configuration."""

    submit = SubmitField(_l("Save the configuration"))


class TestMessageForm(FlaskForm):
    """Step 6: send yourself a test message."""

    submit = SubmitField(_l("Send me a test message"))


class FinishForm(FlaskForm):
    """Step 6 → 7: close the wizard (the configuration is saved and tested)."""

    submit = SubmitField(_l("Finish"))


class RestartForm(FlaskForm):
    """Throw the draft away and start again (from the saved configuration, if any)."""

    submit = SubmitField(_l("Start over"))



class QyServerForm(FlaskForm):
    """Step 4 (WeCom): the application's 接收消息 server (Token, EncodingAESKey, public URL) to test, or
    leave out. ``have_key`` says the draft holds an EncodingAESKey (the field may then be left blank)."""

    wx_qy_token = StringField(_l("Token"), filters=[_strip])
    wx_qy_encoding_aes_key = StringField(_l("EncodingAESKey"), filters=[_strip])
    public_url = StringField(_l("Public URL WeCom will call"), filters=[_strip], validators=[Length(max=500)])
    left_out = BooleanField(_l("Leave the 接收消息 server out: the application already has its trusted IP "
                               "(企业可信IP), and this service need not hear of WeCom's contact changes"))
    test = SubmitField(_l("Test the URL"))
    submit = SubmitField(_l("Next"))

    def __init__(self, *args, have_key: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.have_key = have_key

    def _leaving_out(self) -> bool:
        return bool(self.left_out.data) and not self.test.data

    def validate_wx_qy_token(self, field):
        if not self._leaving_out() and not validate_token(field.data):
            raise ValidationError(_l("The Token is 3 to 32 letters or digits, the same as on WeCom's 设置API接收 "
                                     "page. Press Generate for a good one."))

    def validate_wx_qy_encoding_aes_key(self, field):
        if self._leaving_out() or (not field.data and self.have_key):
            return
        if not validate_encoding_aes_key(field.data):
            raise ValidationError(_l("The EncodingAESKey is exactly 43 letters and digits: press Generate here or "
                                     "随机获取 on WeCom's 设置API接收 page, and use the same key on both sides."))

    def validate_public_url(self, field):
        if not self._leaving_out() and not re.match(r"^https?://[^/\s]+", field.data or ""):
            raise ValidationError(_l("Enter the full address, starting with http:// or https://."))
