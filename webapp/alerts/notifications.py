"""Alertmanager and Grafana webhook notifications: read, checked, and written as one message.

Both senders post the same shape (Grafana's unified alerting kept Alertmanager's): a group of
``alerts[]``, each with ``status``, ``labels``, ``annotations``, ``startsAt``, ``generatorURL`` and
``fingerprint``, and around them the group's ``status``, ``groupKey``, ``receiver``, ``externalURL``
and ``truncatedAlerts``. Alertmanager marks it ``version`` "4"; Grafana adds ``orgId``, ``title``,
``state`` and ``message`` (its own rendering, not used here: the message is built from the alerts,
the same way for both, so every receiver reads alerts alike whatever sent them).

:func:`parse` checks a notification strictly and raises :class:`NotANotification` with a sentence
naming what is missing or wrong; :func:`compose` writes it as a :class:`Notification`:

- heading ``[FIRING:2] DiskFull``: the status word and count as Alertmanager writes them in its own
  titles, and the alert name(s);
- message: the status in Chinese then English (the receiver's WeChat language is unknown here, as
  for the callback's replies), then one line per alert with its instance and summary;
- date: when the earliest alert started, in the server's time zone; url: the first alert's
  ``generatorURL``, else the sender's ``externalURL``.

WeChat shows little of a long message; the delivery engine cuts it by the content rules and links
to the whole text (``delivery.links``). No Flask request here, and no database.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from flask_babel import force_locale, gettext, ngettext, pgettext

from webapp.delivery.content import Notification, cut_chars, default_date

ALERTMANAGER, GRAFANA = "alertmanager", "grafana"
SENDERS = {ALERTMANAGER: "Alertmanager", GRAFANA: "Grafana"}
FIRING, RESOLVED = "firing", "resolved"
#: The limits of the send API's own fields: a webhook's message is no longer than a caller's may be.
HEADING_LIMIT, MESSAGE_LIMIT, URL_LIMIT = 1000, 20000, 2048
_URL_RE = re.compile(r"^https?://[^\s]+$")


class NotANotification(ValueError):
    """The body is not a notification of the sender; the message names what is missing or wrong."""


@dataclass(frozen=True)
class Alert:
    """One alert of a group."""

    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    generator_url: str
    fingerprint: str


@dataclass(frozen=True)
class AlertGroup:
    """One notification: a group of alerts with a common status."""

    sender: str
    status: str
    receiver: str
    group_key: str
    alerts: tuple[Alert, ...]
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    external_url: str
    truncated: int
    org_id: int | None
    title: str

    def identity(self) -> list:
        """What makes this notification the same one when it comes again (a retry): the group, its
        status and the set of alerts with their start times, whatever their order."""
        alerts = sorted([a.fingerprint or _pairs(a.labels), a.starts_at.isoformat(), a.status] for a in self.alerts)
        return [self.sender, self.receiver, self.group_key, self.status, self.org_id, self.truncated, alerts]


# --- reading ---------------------------------------------------------------------------------------

def parse(sender: str, body: dict) -> AlertGroup:
    """The notification in ``body`` (a JSON object) from ``sender``; NotANotification when it is not one."""
    name = SENDERS[sender]
    _refuse_nul(body)
    if sender == ALERTMANAGER and body.get("version") not in (None, "4"):
        raise NotANotification(gettext("version %(version)s is not supported: this service reads Alertmanager's "
                                       "webhook version 4.", version=_shown(body.get("version"))))
    alerts = body.get("alerts")
    if alerts is None:
        raise NotANotification(gettext("alerts is missing: a %(sender)s notification lists its alerts in alerts[].",
                                       sender=name))
    if not isinstance(alerts, list):
        raise NotANotification(gettext("alerts must be a list of alerts."))
    if not alerts:
        raise NotANotification(gettext("alerts is empty: the notification holds no alert to send."))
    status = _status(body.get("status"), "status")
    group_key = body.get("groupKey")
    if sender == ALERTMANAGER and group_key is None:
        raise NotANotification(gettext("groupKey is missing: Alertmanager sends it with every notification."))
    org_id = body.get("orgId")
    truncated = body.get("truncatedAlerts")
    return AlertGroup(
        sender=sender, status=status,
        receiver=_string(body, "receiver"), group_key=_string(body, "groupKey"),
        alerts=tuple(_alert(item, index, status) for index, item in enumerate(alerts)),
        group_labels=_mapping(body.get("groupLabels")), common_labels=_mapping(body.get("commonLabels")),
        external_url=_string(body, "externalURL"),
        truncated=truncated if isinstance(truncated, int) and not isinstance(truncated, bool) and truncated > 0 else 0,
        org_id=org_id if isinstance(org_id, int) and not isinstance(org_id, bool) else None,
        title=_string(body, "title"),
    )


def _refuse_nul(body: dict) -> None:
    """No text of ours may hold a NUL character (PostgreSQL cannot store one): refuse it anywhere."""
    stack: list = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise NotANotification(gettext("The notification contains a NUL character, which no field accepts."))
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _shown(value) -> str:
    return repr(value)[:40]


def _status(value, field: str) -> str:
    if value is None:
        raise NotANotification(gettext("%(field)s is missing: it must be firing or resolved.", field=field))
    if value not in (FIRING, RESOLVED):
        raise NotANotification(gettext("%(field)s must be firing or resolved, not %(value)s.", field=field,
                                       value=_shown(value)))
    return value


def _string(body: dict, field: str) -> str:
    value = body.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NotANotification(gettext("%(field)s must be a string.", field=field))
    return value


def _mapping(value) -> dict[str, str]:
    """Labels the sender adds for context (groupLabels, commonLabels): only their string values count."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(v, str)}


def _strings(value, field: str, *, required: bool) -> dict[str, str]:
    if value is None and not required:
        return {}
    if value is None:
        raise NotANotification(gettext("%(field)s is missing.", field=field))
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise NotANotification(gettext("%(field)s must map names to strings.", field=field))
    return value


def _time(value, field: str) -> datetime:
    if value is None:
        raise NotANotification(gettext("%(field)s is missing: each alert says when it started (RFC 3339).",
                                       field=field))
    try:
        if not isinstance(value, str):
            raise ValueError
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise NotANotification(gettext("%(field)s is not an RFC 3339 time such as 2026-01-31T09:30:00Z.",
                                       field=field)) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _alert(item, index: int, group_status: str) -> Alert:
    field = f"alerts[{index}]"
    if not isinstance(item, dict):
        raise NotANotification(gettext("%(field)s must be an object.", field=field))
    status = group_status if item.get("status") is None else _status(item.get("status"), f"{field}.status")
    return Alert(
        status=status,
        labels=_strings(item.get("labels"), f"{field}.labels", required=True),
        annotations=_strings(item.get("annotations"), f"{field}.annotations", required=False),
        starts_at=_time(item.get("startsAt"), f"{field}.startsAt"),
        generator_url=_string(item, "generatorURL"),
        fingerprint=_string(item, "fingerprint"),
    )


# --- writing ---------------------------------------------------------------------------------------

def _both(message) -> str:
    """``message()`` (a gettext call) in Chinese, then in English; once when both are the same."""
    texts = []
    for language in ("zh", "en"):
        with force_locale(language):
            texts.append(message())
    return " / ".join(dict.fromkeys(texts))


def _status_word(status: str) -> str:
    if status == FIRING:
        return _both(lambda: pgettext("alert status", "Firing"))
    return _both(lambda: pgettext("alert status", "Resolved"))


def _pairs(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _names(group: AlertGroup) -> list[str]:
    """The alert names the heading shows: the group's, else every distinct one in order."""
    named = group.group_labels.get("alertname") or group.common_labels.get("alertname")
    if named:
        return [named]
    names = list(dict.fromkeys(a.labels["alertname"] for a in group.alerts if a.labels.get("alertname")))
    return names or [group.title or SENDERS[group.sender]]


def _instance(alert: Alert, group: AlertGroup) -> str:
    """Which instance the alert is about: its ``instance`` label, else the labels that set it apart."""
    if alert.labels.get("instance"):
        return alert.labels["instance"]
    own = {k: v for k, v in alert.labels.items() if k != "alertname" and group.common_labels.get(k) != v}
    if not own:
        own = {k: v for k, v in alert.labels.items() if k != "alertname"}
    return _pairs(own) or alert.labels.get("alertname", "") or alert.fingerprint


def _line(alert: Alert, group: AlertGroup, several_names: bool) -> str:
    summary = next((alert.annotations[k] for k in ("summary", "description", "message") if alert.annotations.get(k)), "")
    text = _instance(alert, group)
    if several_names and alert.labels.get("alertname"):
        text = f"{alert.labels['alertname']} {text}"
    if summary:
        text = f"{text}: {summary}"
    if alert.status != group.status:  # a firing group also lists the alerts of it that resolved
        text = f"{text} ({_both(lambda: pgettext('alert status', 'resolved'))})"
    return " ".join(text.split())  # one line per alert, whatever the annotation holds


def _usable_url(url: str) -> str | None:
    return url if url and len(url) <= URL_LIMIT and _URL_RE.match(url) else None


def compose(group: AlertGroup) -> Notification:
    """The message for ``group``: heading, the status and one line per alert, date and link."""
    names = _names(group)
    count = sum(1 for a in group.alerts if a.status == group.status)
    heading, _ = cut_chars(f"[{group.status.upper()}:{count}] {', '.join(names)}", HEADING_LIMIT)
    lines = [f"{_status_word(group.status)}: {', '.join(names)}"]
    # Firing alerts first (the ones that need someone), each group in the order they started.
    ordered = sorted(group.alerts, key=lambda a: (a.status != group.status, a.starts_at))
    several = len(names) > 1
    size, left_out = len(lines[0]), group.truncated
    for index, alert in enumerate(ordered):
        line = _line(alert, group, several)
        if size + 1 + len(line) > MESSAGE_LIMIT - 100:  # room for the closing line
            left_out += len(ordered) - index
            break
        lines.append(line)
        size += 1 + len(line)
    if left_out:
        lines.append(_both(lambda: ngettext("%(num)d more alert not listed.", "%(num)d more alerts not listed.",
                                            left_out)))
    started = [a.starts_at for a in group.alerts if a.starts_at.year > 1]  # 0001-01-01: Go's zero time
    try:
        date = default_date(min(started).astimezone()) if started else None
    except (OverflowError, ValueError):  # a time at the edge of the calendar, shifted out of it
        date = None
    firsts = [a for a in ordered if _usable_url(a.generator_url)]
    url = _usable_url(firsts[0].generator_url) if firsts else _usable_url(group.external_url)
    return Notification(heading=heading, message="\n".join(lines), date=date, url=url)
