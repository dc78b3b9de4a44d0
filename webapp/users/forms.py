"""Forms of the users page."""
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length


class NewUserForm(FlaskForm):
    """User name, password typed twice, and whether the new user is an administrator."""

    username = StringField(_l("User name"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(
        _l("Password again"), validators=[DataRequired(), EqualTo("password", message=_l("The two passwords differ."))]
    )
    is_admin = BooleanField(_l("Administrator (may use the console and this page)"))
    submit = SubmitField(_l("Create the user"))


class ResetPasswordForm(FlaskForm):
    """A new password for another user, typed twice."""

    password = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(
        _l("New password again"), validators=[DataRequired(), EqualTo("password", message=_l("The two passwords differ."))]
    )
    submit = SubmitField(_l("Set the new password"))
