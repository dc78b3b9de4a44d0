"""The first-run form that creates the first administrator."""
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length


class AdminForm(FlaskForm):
    """User name and password (typed twice) of the first administrator."""

    username = StringField(_l("Administrator user name"), validators=[DataRequired(), Length(max=64)], default="admin")
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(
        _l("Password again"), validators=[DataRequired(), EqualTo("password", message=_l("The two passwords differ."))]
    )
    submit = SubmitField(_l("Create the administrator"))
