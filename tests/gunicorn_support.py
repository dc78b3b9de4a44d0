"""The service served by real gunicorn processes for the length of a test, and killed afterwards.

The installations themselves (:class:`tests.crash_support.Installation`, and its multi-worker
:class:`tests.drill_support.Service`) install and start the service; this module gives the tests
that run them one way to make them on a database and to be sure every process they started dies,
whether the test passed or not::

    @pytest.fixture
    def service(database, wechat, tmp_path):
        with installations(Service, database, wechat[0], tmp_path, SCHEDULER_ENABLED=False) as make:
            yield make

    def test_something(service):
        svc = service(DELIVERY_TIME_BUDGET=60)      # the defaults above, with this one changed
        base = start_workers(svc, workers=3, threads=2)
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from tests.crash_support import Installation, wait_for
from tests.drill_support import Service

Made = TypeVar("Made", bound=Installation)


@contextlib.contextmanager
def installations(kind: type[Made], database_url: str, simulator_base: str, log_dir: Path,
                  **defaults) -> Iterator[Callable[..., Made]]:
    """Yield ``make(**settings)``, which builds a ``kind`` on ``database_url`` with ``defaults`` updated by ``settings``.

    When the block exits, every installation made is stopped: its gunicorn process group (and, for a
    :class:`~tests.drill_support.Service`, its scheduler processes) killed with SIGKILL.
    """
    made: list[Made] = []

    def make(**settings) -> Made:
        made.append(kind(database_url, simulator_base, log_dir, **{**defaults, **settings}))
        return made[-1]

    try:
        yield make
    finally:
        for installation in made:
            installation.stop()


def start_workers(service: Service, workers: int, threads: int) -> str:
    """Serve ``service`` with ``workers`` gunicorn workers; return its base URL.

    Returns once the service answers ``/healthz`` and all the workers have been forked, so that
    requests on fresh connections can reach every one of them.
    """
    base = service.start(workers=workers, threads=threads)
    wait_for(lambda: len(service.workers()) == workers, 30, 0.1, f"{workers} workers")
    return base
