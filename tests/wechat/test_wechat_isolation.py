"""The protocol package stands alone: no Flask, no SQLAlchemy, nothing else of webapp."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_package_imports_nothing_of_the_app():
    """Import webapp.wechat without running webapp/__init__.py and list what got loaded."""
    script = textwrap.dedent(f"""
        import sys, types
        pkg = types.ModuleType("webapp")
        pkg.__path__ = [{os.path.join(ROOT, "webapp")!r}]
        sys.modules["webapp"] = pkg
        import webapp.wechat
        from webapp.wechat import crypto, errors, http, mp, signature, work, xmlmsg
        bad = sorted(m for m in sys.modules
                     if m.split(".")[0] in ("flask", "flask_sqlalchemy", "sqlalchemy", "werkzeug")
                     or (m.startswith("webapp.") and not m.startswith("webapp.wechat")))
        print(",".join(bad))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_public_names_are_exported():
    """The package root re-exports the main names."""
    import webapp.wechat as wechat
    for name in wechat.__all__:
        assert hasattr(wechat, name), name
