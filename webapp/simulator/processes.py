"""The simulator lives in the memory of one process: how to run it as a process of its own, and the
refusal when it would be served by several.

Its World (tokens, followers, delivered messages, QR codes, server configuration) is a Python object,
not rows of a database. Under several workers each would hold a World of its own: the service's
token from one worker is unknown to the next (40001), a message lands on one worker's phones and not
on the others'. Rather than half-work, the gunicorn configuration refuses to start such a server
(:func:`refusal`, called from ``gunicorn.conf.py``), and the simulator's routes answer 503 with the
same sentence under any server that says it runs several processes (``wsgi.multiprocess``).

This module imports no more than Flask's config reader, so the gunicorn master can use it.
"""
from __future__ import annotations

import os

#: The simulator as one process of its own (``make simulator`` runs it on PORT_SIM, default 5001).
STANDALONE_COMMAND = 'flask --app "webapp.simulator:create_standalone_app()" run --port 5001'

#: Why a server with several processes cannot serve the simulator, and what to do instead.
REFUSAL = (
    "The WeChat simulator keeps its state in the memory of one process, so several workers would each "
    "have a simulator of their own: run it as one process of its own (make simulator, or "
    f"{STANDALONE_COMMAND}) with FLASK_WEIXIN_SIMULATOR=false for the service and its "
    "FLASK_WEIXIN_MP_API_BASE and FLASK_WEIXIN_QY_API_BASE pointing at it, or serve with one worker "
    "(GUNICORN_WORKERS=1). "
    "微信模拟器把状态保存在一个进程的内存里，多个工作进程会各自拥有一个模拟器：请把它作为单独的一个进程运行"
    f"（make simulator，或 {STANDALONE_COMMAND}），服务设置 FLASK_WEIXIN_SIMULATOR=false，"
    "并把 FLASK_WEIXIN_MP_API_BASE 和 FLASK_WEIXIN_QY_API_BASE 指向它；或者只用一个工作进程（GUNICORN_WORKERS=1）。"
)


def enabled_in_service(instance_path: str) -> bool:
    """Whether the service's configuration mounts the simulator in-process (``WEIXIN_SIMULATOR``).

    Read from the sources ``create_app`` reads, in its order (defaults, ``instance/config.py``,
    ``FLASK_*`` variables), without building the app: the gunicorn master must not open the database.
    """
    from flask import Config

    from webapp.config import Defaults, as_bool

    config = Config(instance_path)
    config.from_object(Defaults)
    config.from_pyfile("config.py", silent=True)
    config.from_prefixed_env()
    return as_bool(config.get("WEIXIN_SIMULATOR"))


def serves_simulator(app_uri: str | None, instance_path: str) -> bool:
    """Whether the WSGI app ``app_uri`` (gunicorn's ``wsgi:app``) serves the simulator: the standalone
    app, or the service with the simulator switched on."""
    if app_uri and app_uri.replace(" ", "").startswith("webapp.simulator"):
        return True
    return enabled_in_service(instance_path)


def refusal(workers: int, app_uri: str | None, instance_path: str | None = None) -> str | None:
    """The sentence to stop a server with ``workers`` processes for ``app_uri``, or None when it may start."""
    if workers <= 1:
        return None
    instance_path = instance_path or os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "instance")
    return REFUSAL if serves_simulator(app_uri, instance_path) else None
