"""The "Scan a QR code" page: a simulated WeChat user points their camera at one of the
Official Account's QR codes (PROTOCOL.md section 3).

The page lists the codes the service created through ``/cgi-bin/qrcode/create`` (newest first),
lets the visitor pick who scans (followers and non-followers) and press "Scan" next to a code, or
paste what a phone's camera would read (the code's content URL). The form posts to
``/simulator/panel/scan``, which calls :func:`~webapp.simulator.push.scan_qrcode` and comes back
to the page showing what the person saw in WeChat. Plain forms, no script of their own.
"""
from __future__ import annotations

import time
from typing import Any

from flask import redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from webapp.simulator import push
from webapp.simulator.blueprint import bp
from webapp.simulator.gate import current_world
from webapp.simulator.world import NOTICE_QR_EXPIRED, NOTICE_UNAVAILABLE

#: QR codes listed on the page, and scans shown in its log.
CODES_SHOWN = 50
SCANS_SHOWN = 10
#: Scenes longer than this are shortened in the list (the full scene is in the tooltip).
SCENE_SHOWN_CHARS = 28


def clock_text(timestamp: float) -> str:
    """A timestamp as the simulator's pages show it."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def duration_text(seconds: float) -> str:
    """A length of time, roughly, in the largest units that fit ("5 min", "6 d 23 h")."""
    total = int(max(0, seconds))
    if total < 60:
        return _("%(n)s s", n=total)
    minutes = total // 60
    if minutes < 60:
        return _("%(n)s min", n=minutes)
    hours = minutes // 60
    if hours < 48:
        return _("%(h)s h %(m)s min", h=hours, m=minutes % 60)
    return _("%(d)s d %(h)s h", d=hours // 24, h=hours % 24)


def short_scene(scene: Any) -> str:
    """A scene as the list shows it: long ones cut with an ellipsis."""
    text = str(scene)
    if len(text) <= SCENE_SHOWN_CHARS:
        return text
    return text[:SCENE_SHOWN_CHARS - 1] + "…"


def base_context() -> dict[str, Any]:
    """What the simulator's layout needs on any page."""
    world = current_world()
    return {"lang": str(get_locale() or "en"), "version": world.version}


def _code_rows(now: float) -> list[dict[str, Any]]:
    rows = []
    for code in current_world().recent_tickets(CODES_SHOWN):
        expires_at = code["expires_at"]
        if expires_at is None:
            expires = _("never (permanent code)")
        elif code["expired"]:
            expires = _("expired %(ago)s ago", ago=duration_text(now - expires_at))
        else:
            expires = _("in %(left)s", left=duration_text(expires_at - now))
        rows.append({**code, "scene_text": str(code["scene"]),
                     "scene_short": short_scene(code["scene"]),
                     "created_text": clock_text(code["created_at"]), "expires_text": expires,
                     "permanent": expires_at is None})
    return rows


def _scan_view(scan: dict[str, Any]) -> dict[str, Any]:
    return {**scan, "time_text": clock_text(scan["time"]), "scene_text": str(scan["scene"]),
            "scene_short": short_scene(scan["scene"])}


def render_scan_page(error: str | None = None, status: int = 200,
                     chosen: str | None = None) -> tuple[str, int]:
    """The page, optionally with an error about the last form (and the HTTP status to use)."""
    world = current_world()
    now = world.now()
    users = world.describe()["mp"]["users"]
    known = {u["openid"] for u in users}
    chosen = chosen or request.args.get("openid", "")
    done = None
    done_id = request.args.get("done", "")
    if done_id.isdigit():
        found = world.get_scan(int(done_id))
        if found is not None:
            done = _scan_view(found)
            chosen = chosen or found["openid"]
    if chosen not in known:
        chosen = next((u["openid"] for u in users if u["following"]),
                      users[0]["openid"] if users else "")
    scans = [_scan_view(s) for s in world.list_scans(limit=SCANS_SHOWN)[::-1]]
    return render_template(
        "simulator/scan.html", codes=_code_rows(now), followers=[u for u in users
                                                                  if u["following"]],
        others=[u for u in users if not u["following"]], chosen=chosen, done=done,
        scans=scans, error=error, clock_text=clock_text(now),
        notice_expired=NOTICE_QR_EXPIRED, notice_unavailable=NOTICE_UNAVAILABLE,
        **base_context()), status


@bp.get("/scan")
def scan_page() -> tuple[str, int]:
    """Scan a QR code: the account's recent codes, who scans, and the outcome of the last scan."""
    return render_scan_page()


@bp.post("/panel/scan")
def panel_scan() -> Response | tuple[str, int]:
    """Scan the code whose "Scan" button was pressed (``ticket``) or the pasted content
    (``url``) as the chosen person, then show the outcome on the scan page."""
    form = request.form
    openid = form.get("openid", "")
    world = current_world()
    if openid not in {u["openid"] for u in world.describe()["mp"]["users"]}:
        return render_scan_page(_("Choose who scans the code."), 400)
    target = form.get("ticket") or form.get("url", "")
    if not target.strip():
        return render_scan_page(
            _("Paste what the camera read, or press Scan next to one of the codes."), 400,
            chosen=openid)
    try:
        result = push.scan_qrcode(world, openid, target)
    except push.UnknownQrCode:
        return render_scan_page(
            _("WeChat does not know this code: no QR code of the account was created with "
              "this content or ticket."), 400, chosen=openid)
    except ValueError as exc:
        return render_scan_page(str(exc), 400, chosen=openid)
    return redirect(url_for("simulator.scan_page", done=result.scan_id, openid=openid), code=303)
