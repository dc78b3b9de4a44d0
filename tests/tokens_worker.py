"""A separate process for the token tests: several threads ask the broker for a token at once.

Run as ``python -m tests.tokens_worker DATABASE_URL MP_API_BASE THREADS START_AT``; prints one token per line.
"""
import sys
import threading
import time


def main() -> None:
    database_url, api_base, threads, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    from webapp import create_app
    from webapp.extensions import db
    from webapp.simulator.world import MP_APPID, MP_SECRET
    from webapp.tokens import TokenSource, get_token

    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key-not-for-production",
                      "DATABASE_URL": database_url, "SCHEDULER_ENABLED": False, "WEIXIN_MP_API_BASE": api_base})
    results: list[str] = []

    def ask() -> None:
        with app.app_context():
            source = TokenSource.official_account(MP_APPID, MP_SECRET)
            # Everyone starts at the same moment, in every process.
            time.sleep(max(0.0, start_at - time.time()))
            results.append(get_token(source))
            db.session.remove()

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print("\n".join(results))


if __name__ == "__main__":
    main()
