"""Shared pieces of the multi-worker tests (``test_multiworker.py``) and the failure drills (``test_drills.py``).

They build on :mod:`tests.crash_support`: an :class:`~tests.crash_support.Installation` installed with the
real CLI and served by gunicorn in its own process group. Here it grows several workers, separate
``flask --app wsgi scheduler`` processes, a way to find and ``kill -9`` the worker that is busy
delivering, a throwaway PostgreSQL cluster that can be restarted under load, senders that keep
posting through the send API while a drill runs, and the exactly-once checks that compare what the
database says was delivered with what the simulated phones received.

Run as a module it is the delivery loop of ``test_multiworker.py``::

    python -m tests.drill_support deliver-loop LIMIT MAX_SECONDS

(one process claiming and sending due deliveries with the app configured from ``FLASK_*`` variables,
printing the delivery ids it claimed as JSON at the end).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import requests
from sqlalchemy import text

from tests.crash_support import PYTHON, ROOT, Installation, free_port, wait_for
from webapp.simulator.world import (MP_APPID, MP_SECRET, QY_AGENTID, QY_CORPID, QY_CORPSECRET,
                                    TEMPLATE_NOTIFICATION_ID)

SEND = "/api/c/compapi/v2/cmsi/send_weixin/"
APP_CODE = "drill"

MP_CHANNEL = {"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": "DrillToken2026",
              "wx_template_id": TEMPLATE_NOTIFICATION_ID}
QY_CHANNEL = {"wx_type": "qywx", "wx_qy_corpid": QY_CORPID, "wx_qy_corpsecret": QY_CORPSECRET,
              "wx_qy_agentid": QY_AGENTID, "wx_qy_msgtype": "text"}


def headers(secret: str, code: str = APP_CODE) -> dict:
    """The BlueKing credentials header of the drills' calling application."""
    return {"X-Bkapi-Authorization": json.dumps({"bk_app_code": code, "bk_app_secret": secret, "bk_username": "admin"})}


def add_followers(world, count: int, prefix: str = "oDrill") -> list[str]:
    """Followers of the Official Account, with 28-character openids like WeChat's."""
    openids = [f"{prefix}{i:0{28 - len(prefix)}d}" for i in range(count)]
    for openid in openids:
        world.upsert_mp_user(openid, openid[-6:], True)
    return openids


def add_members(world, count: int, prefix: str = "drill") -> list[str]:
    """WeCom members visible to the seed application."""
    userids = [f"{prefix}{i:04d}" for i in range(count)]
    for userid in userids:
        world.upsert_qy_member(userid, userid, True, QY_AGENTID)
    return userids


# --- processes -------------------------------------------------------------------------------------

def child_pids(pid: int) -> list[int]:
    """The direct children of process ``pid`` (a gunicorn master's workers)."""
    children: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as handle:
                children.update(int(p) for p in handle.read().split())
    return sorted(children)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def connections_to(port: int) -> set[str]:
    """Socket inodes of established TCP connections to 127.0.0.1:``port`` (from /proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and int(remote.split(":")[1], 16) == port:
                found.add(inode)
    return found


def connections_per_process(pids: list[int], port: int) -> dict[int, int]:
    """How many open connections to ``port`` each of ``pids`` holds (the worker fanning out holds most)."""
    open_ = connections_to(port)
    return {pid: len(_socket_inodes(pid) & open_) for pid in pids}


class Service(Installation):
    """An installation served by several gunicorn workers, with scheduler processes of its own."""

    def __init__(self, database_url: str, simulator_base: str, log_dir: Path, **settings):
        super().__init__(database_url, simulator_base, log_dir, **settings)
        self.schedulers: list[subprocess.Popen] = []

    def start_scheduler(self) -> subprocess.Popen:
        """Start one ``flask --app wsgi scheduler`` process (its own process group); return it once running."""
        number = len(self.schedulers) + 1
        path = self.log_dir / f"scheduler-{number}.log"
        log = open(path, "wb")
        process = subprocess.Popen([PYTHON, "-m", "flask", "--app", "wsgi", "scheduler"], cwd=ROOT, env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.schedulers.append(process)

        def running():
            assert process.poll() is None, f"scheduler {number} exited:\n{path.read_text(errors='replace')}"
            return "Scheduler running" in path.read_text(errors="replace")

        wait_for(running, 60, 0.1, f"scheduler {number} to start")
        return process

    def workers(self) -> list[int]:
        """The gunicorn master's worker processes."""
        assert self.process is not None
        return child_pids(self.process.pid)

    def stop_schedulers(self) -> None:
        for process in self.schedulers:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def stop(self) -> None:
        self.stop_schedulers()
        super().stop()

    def log(self) -> str:
        parts = []
        for pattern in ("service-*.log", "scheduler-*.log"):
            for path in sorted(self.log_dir.glob(pattern)):
                parts.append(f"--- {path.name} ---\n" + path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def logs_containing(self, *needles: str) -> list[str]:
        """Lines of every service and scheduler log that contain any of ``needles``."""
        lines = []
        for pattern in ("service-*.log", "scheduler-*.log"):
            for path in sorted(self.log_dir.glob(pattern)):
                lines += [f"{path.name}: {line}" for line in path.read_text(errors="replace").splitlines()
                          if any(needle in line for needle in needles)]
        return lines

    def rows(self) -> list[dict]:
        """Every delivery with its message's content: id, message_id, receiver, status, attempts, client_msg_id, body, errmsg."""
        with self.engine.connect() as conn:
            result = conn.execute(text(
                "SELECT d.id, d.message_id, d.receiver, d.status, d.attempts, d.client_msg_id, d.errcode, d.errmsg, "
                "m.body FROM deliveries d JOIN messages m ON m.id = d.message_id ORDER BY d.id")).mappings()
            return [dict(row) for row in result]


def settle(service: Installation, timeout: float, what: str = "") -> dict:
    """Wait until no delivery is queued any more; return the statuses."""
    def done():
        statuses = service.statuses()
        return statuses if statuses and not statuses.get("queued") else None

    try:
        return wait_for(done, timeout, 0.5, f"every delivery to leave the queue {what}")
    except AssertionError:
        raise AssertionError(f"deliveries still queued after {timeout} s: {service.statuses()}\n{service.log()}") from None


# --- senders ---------------------------------------------------------------------------------------

class Senders:
    """Calling programs that keep posting messages through the send API while a drill runs.

    Every message has a unique short content (``tag``) so that what the phones received can be
    matched with what was sent; every answer is kept with the time it came and the drill phase.
    """

    def __init__(self, base: str, secret: str, receivers: list[str], threads: int = 3, pause: float = 0.2,
                 per_message: int = 2, timeout: float = 60):
        self.base, self.secret, self.receivers = base, secret, receivers
        self.threads_count, self.pause, self.per_message, self.timeout = threads, pause, per_message, timeout
        self.run_id = uuid.uuid4().hex[:4]
        self.phase = "before"
        self.results: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._counter = 0

    def _next(self) -> tuple[str, list[str]]:
        with self._lock:
            self._counter += 1
            number = self._counter
        start = (number * self.per_message) % len(self.receivers)
        receivers = [self.receivers[(start + i) % len(self.receivers)] for i in range(self.per_message)]
        return f"d{self.run_id}-{number:05d}", receivers  # at most 20 characters: a template value

    def post_one(self, session: requests.Session | None = None) -> dict:
        """Post one message; return (and keep) what happened."""
        tag, receivers = self._next()
        record = {"tag": tag, "receivers": receivers, "phase": self.phase, "sent_at": time.monotonic()}
        try:
            answer = (session or requests).post(self.base + SEND, headers=headers(self.secret), timeout=self.timeout,
                                                json={"receiver": receivers, "data": {"heading": "Drill", "message": tag}})
            record["status"] = answer.status_code
            record["content_type"] = answer.headers.get("Content-Type", "")
            try:
                record["answer"] = answer.json()
            except ValueError:
                record["answer"] = None
                record["text"] = answer.text[:500]
        except requests.RequestException as exc:
            record["status"] = None
            record["error"] = f"{type(exc).__name__}: {exc}"[:300]
        record["answered_at"] = time.monotonic()
        with self._lock:
            self.results.append(record)
        return record

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                self.post_one(session)
                self._stop.wait(self.pause)

    def start(self) -> "Senders":
        for number in range(self.threads_count):
            thread = threading.Thread(target=self._run, name=f"sender-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[dict]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 10)
        return self.results

    def accepted(self) -> list[dict]:
        """Messages the service accepted: answered 200 with every delivery ``sent`` or ``queued``."""
        return [r for r in self.results if r["status"] == 200 and r.get("answer") and r["answer"].get("data")
                and all(d["status"] in ("sent", "queued") for d in r["answer"]["data"]["deliveries"])]


# --- exactly once ----------------------------------------------------------------------------------

def check_mp_exactly_once(world, rows: list[dict], accepted: list[dict]) -> dict:
    """Every delivery row was delivered exactly once as a template message, and nothing else was.

    The phone (the simulator's inbox) must hold one message per delivery row, each with that row's
    ``client_msg_id``, receiver and content; every accepted message reached each of its receivers
    once. Repeated calls (a retry whose first answer was lost) count as "not sent twice" only
    because the simulator suppressed them (its ``duplicates_suppressed``), which is returned.
    """
    assert rows, "no delivery was stored"
    not_sent = [r for r in rows if r["status"] != "sent"]
    assert not not_sent, f"{len(not_sent)} deliveries not sent, e.g. {not_sent[:3]}"
    ids = [r["client_msg_id"] for r in rows]
    assert len(set(ids)) == len(ids), "two deliveries share a client_msg_id"
    phone = world.get_messages("mp")
    shown = Counter(m["client_msg_id"] for m in phone)
    twice = {k: n for k, n in shown.items() if n > 1}
    assert not twice, f"the phone shows {len(twice)} messages more than once: {list(twice.items())[:5]}"
    by_id = {m["client_msg_id"]: m for m in phone}
    missing = [r for r in rows if r["client_msg_id"] not in by_id]
    assert not missing, f"{len(missing)} deliveries never reached the phone, e.g. {missing[:3]}"
    unknown = set(by_id) - set(ids)
    assert not unknown, f"the phone shows {len(unknown)} messages the database does not know"
    for row in rows:
        message = by_id[row["client_msg_id"]]
        assert message["to"] == row["receiver"] and message["data"].get("keyword1") == row["body"], (row, message)
    assert len(phone) == len(rows)
    received = Counter((m["to"], m["data"].get("keyword1")) for m in phone)
    for record in accepted:
        for receiver in record["receivers"]:
            assert received[(receiver, record["tag"])] == 1, (record, received[(receiver, record["tag"])])
    stats = world.stats()
    return {"deliveries": len(rows), "calls": stats["calls"].get("template_send", 0),
            "suppressed": stats["duplicates_suppressed"]["mp"]}


def check_qy_exactly_once(world, rows: list[dict], accepted: list[dict]) -> dict:
    """As :func:`check_mp_exactly_once` for WeCom: each (member, content) pair received exactly once.

    A WeCom retry is recognised by ``enable_duplicate_check`` within WECOM_DUPLICATE_CHECK_SECONDS;
    the simulator counts the calls it answered from that check without delivering.
    """
    assert rows, "no delivery was stored"
    not_sent = [r for r in rows if r["status"] != "sent"]
    assert not not_sent, f"{len(not_sent)} deliveries not sent, e.g. {not_sent[:3]}"
    received: Counter = Counter()
    for message in world.get_messages("qy"):
        content = str(message["content"].get("content", message["content"]))
        for member in message["to"]:
            received[(member.lower(), content)] += 1
    twice = {k: n for k, n in received.items() if n > 1}
    assert not twice, f"{len(twice)} members got a message more than once, e.g. {list(twice.items())[:5]}"
    expected = Counter()
    for row in rows:
        matches = [key for key in received if key[0] == row["receiver"].lower() and row["body"] in key[1]]
        assert len(matches) == 1, f"delivery {row} reached the phone {len(matches)} times"
        expected[matches[0]] += 1
    assert sum(received.values()) == len(rows), f"the phones show {sum(received.values())} messages for {len(rows)} deliveries"
    for record in accepted:
        for receiver in record["receivers"]:
            assert sum(n for (member, content), n in received.items()
                       if member == receiver.lower() and record["tag"] in content) == 1, record
    stats = world.stats()
    return {"deliveries": len(rows), "calls": stats["calls"].get("qy_send", 0),
            "suppressed": stats["duplicates_suppressed"]["qy"]}


# --- a PostgreSQL cluster of our own ---------------------------------------------------------------

def postgres_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL's server is not installed."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    found = shutil.which("pg_ctl")
    if found:
        candidates.insert(0, Path(found).parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


class OwnPostgres:
    """A throwaway PostgreSQL cluster in a temporary folder, on a free port, that a drill may restart.

    The server refuses to run as root, so as root every command runs as the ``postgres`` user.
    """

    def __init__(self, binaries: Path):
        self.bin = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="drill-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.folder)
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}\n{self.server_log()}"

    def server_log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder} "
                   "-c fsync=off -c max_connections=100")
        (self.folder / "options").write_text(options)

    def start(self) -> None:
        options = (self.folder / "options").read_text()
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


# --- the delivery loop of test_multiworker ---------------------------------------------------------

def deliver_loop(limit: int, max_seconds: float) -> None:
    """Claim and deliver due deliveries until none is queued for a while; print the ids claimed (JSON).

    The app is configured from ``FLASK_*`` variables, as ``flask --app wsgi scheduler`` is; this
    process runs the same job (``engine.deliver_due``) in a tight loop, recording every claim.
    """
    from webapp import create_app
    from webapp.delivery import engine
    from webapp.extensions import db

    app = create_app()
    claimed: list[int] = []
    real_claim = engine.claim_due

    def recording_claim(claim: str, limit: int = 200) -> list[int]:
        ids = real_claim(claim, limit)
        claimed.extend(ids)
        return ids

    engine.claim_due = recording_claim
    print("ready", flush=True)
    deadline = time.monotonic() + max_seconds
    idle_since = None
    while time.monotonic() < deadline:
        with app.app_context():
            count = engine.deliver_due(limit)
            queued = db.session.execute(text("SELECT COUNT(*) FROM deliveries WHERE status = 'queued'")).scalar()
        if queued == 0 and count == 0:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 2:
                break
        else:
            idle_since = None
        if count == 0:
            time.sleep(0.05)
    print(json.dumps({"pid": os.getpid(), "claimed": claimed}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "deliver-loop":
        deliver_loop(int(sys.argv[2]), float(sys.argv[3]))
    else:
        raise SystemExit(__doc__)
