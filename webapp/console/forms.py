"""Forms of the administrators' console."""
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, NumberRange, Regexp


class NewAppForm(FlaskForm):
    """Register a calling application."""

    app_code = StringField(_l("App code"), validators=[DataRequired(), Length(max=64),
                                                         Regexp(r"^[A-Za-z0-9_-]+$", message=_l("Letters, digits, _ and - only."))])
    rate_limit = IntegerField(_l("Requests per minute"), default=600, validators=[NumberRange(1, 1_000_000)])
    submit = SubmitField(_l("Register"))


class RateLimitForm(FlaskForm):
    """Change an application's rate limit."""

    rate_limit = IntegerField(_l("Requests per minute"), validators=[NumberRange(1, 1_000_000)])
    submit = SubmitField(_l("Save"))
