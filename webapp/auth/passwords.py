"""The rules a new password must follow, each refusal a sentence that tells the person what to do.

The rules aim at what password guessing actually tries first: short passwords, the user name,
a handful of famous passwords, and short passwords of one kind of character. Long passphrases
("four unrelated words") pass without needing digits or symbols.
"""
from __future__ import annotations

from flask import current_app
from flask_babel import gettext as _

# Longer than this and the mix of character kinds no longer matters: length beats complexity.
MIXED_KINDS_BELOW = 16
MAX_LENGTH = 256
# User names shorter than this ("a", "ab") are left out of the "contains the user name" rule: too
# many good passwords happen to contain two letters.
MIN_NAME_TO_CHECK = 3

# Passwords that guessing tools try in their first few thousand attempts and that the length and
# kind rules alone would let through (or nearly). Compared case-insensitively with the whole password.
COMMON_PASSWORDS = frozenset("""
password123 password1234 password12345 password2024 password2025 password2026 passw0rd123 p@ssw0rd123
p@ssword123 passw0rd!! password!! password@123 password#123 password_123 password-123
admin12345 admin123456 admin@1234 admin@12345 admin#1234 admin_1234 administrator administrator1
administrator123 root123456 root@12345 qwerty12345 qwerty123456 qwertyuiop qwertyuiop123 qwerty@123
1qaz2wsx3edc 1q2w3e4r5t 1q2w3e4r5t6y zaq12wsxcde q1w2e3r4t5 asdfghjkl1 asdf123456 abc1234567
abcd123456 abcdef1234 abc@123456 1234567890 12345678910 0987654321 1234qwer!! 123456789a a123456789
iloveyou123 welcome123 welcome@123 letmein123 changeme123 changeme!! trustno1234 dragon12345
monkey12345 football123 baseball123 sunshine123 princess123 superman123 starwars123 whatever123
test123456 test@12345 guest12345 default123 secret1234 secret12345 weixin123456 wechat123456
""".split())


def password_problem(username: str, password: str) -> str | None:
    """The sentence explaining why ``password`` cannot be used by ``username``, or None when it is fine."""
    password = password or ""
    minimum = int(current_app.config["PASSWORD_MIN_LENGTH"])
    if len(password) < minimum:
        return _("The password must be at least %(n)d characters long. Choose a longer one, for example a few unrelated words.", n=minimum)
    if len(password) > MAX_LENGTH:
        return _("The password must be at most %(n)d characters long. Choose a shorter one.", n=MAX_LENGTH)
    name = (username or "").strip().lower()
    if len(name) >= MIN_NAME_TO_CHECK and name in password.lower():
        return _("The password must not contain the user name. Choose one that has nothing to do with the name.")
    if password.lower() in COMMON_PASSWORDS:
        return _("This password is one of the most common ones and is tried first by anyone guessing. Choose another one.")
    if len(password) < MIXED_KINDS_BELOW and character_kinds(password) < 2:
        return _(
            "A password shorter than %(n)d characters must mix at least two kinds of characters (letters, digits, symbols). "
            "Add a digit or a symbol, or make it at least %(n)d characters long.", n=MIXED_KINDS_BELOW)
    return None


def rules_hint() -> str:
    """The rules in one sentence, shown under every "new password" field."""
    return _("At least %(n)d characters, not containing your user name, not a well-known password; "
             "below %(m)d characters, mix letters with digits or symbols.",
             n=int(current_app.config["PASSWORD_MIN_LENGTH"]), m=MIXED_KINDS_BELOW)


def character_kinds(password: str) -> int:
    """How many of the kinds letters, digits and symbols (anything else, spaces included) ``password`` uses."""
    letters = any(c.isalpha() for c in password)
    digits = any(c.isdigit() for c in password)
    symbols = any(not c.isalnum() for c in password)
    return letters + digits + symbols
