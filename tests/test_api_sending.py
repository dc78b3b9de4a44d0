"""The send service called directly, as an endpoint that builds its own message would call it, and
what sending does (and does not do) to the caller's database session."""
from sqlalchemy import event, select

from tests.api_support import mp, service, sim_messages  # noqa: F401  (fixtures)
from webapp import channel
from webapp.api import sending
from webapp.api.services import ApiError, Caller, SendRequest
from webapp.delivery import answers, engine
from webapp.delivery.content import Notification
from webapp.extensions import db
from webapp.models import ApiApp, AuditEntry, Message
from webapp.simulator.world import OPENID_ALICE


def _caller() -> Caller:
    return Caller(db.session.scalar(select(ApiApp).where(ApiApp.app_code == "bk_monitor")), None)


def test_a_message_built_by_its_endpoint_is_sent_like_a_blueking_call(mp):
    """What a webhook does: build the message itself and hand it to the same send as the BlueKing routes."""
    app, base, api = mp
    with app.test_request_context():
        built = SendRequest(Notification("Alert firing", "HighLatency on api-1"), usernames=["alice", "nobody"])
        answer = sending.send(_caller(), built, "webhook-req-0001")
        message = db.session.scalar(select(Message).where(Message.public_id == answer.data["message_id"]))
        assert message.request_id == "webhook-req-0001" and message.heading == "Alert firing"
    body = answer.body()
    assert answer.status == 200 and body["request_id"] == "webhook-req-0001"
    assert body["result"] is False and body["code"] == 1306201 and body["message"] == "1 of 2 receivers failed"
    assert [(d["username"], d["status"]) for d in body["data"]["deliveries"]] == [("alice", "sent"), ("nobody", "failed")]
    assert body["data"]["username_check"] == {"invalid": ["nobody"]}
    [sent] = sim_messages(base)
    assert sent["to"] == OPENID_ALICE and sent["data"]["first"] == "Alert firing"


def test_without_a_channel_the_send_is_refused_and_nothing_is_stored(service):
    app, base, api = service
    with app.test_request_context():
        try:
            sending.send(_caller(), SendRequest(Notification("h", "m"), receivers=[OPENID_ALICE]), "no-channel-01")
        except ApiError as exc:
            assert exc.code == 1306202 and exc.status == 200 and "set-up" in exc.message
        else:
            raise AssertionError("a send without a configured channel was not refused")
        assert db.session.scalar(select(Message)) is None


def test_delivering_and_describing_leave_the_callers_session_alone(mp):
    """The caller's open transaction and the object it added but did not commit survive a send
    (the pool's outcomes are still seen: the statuses are read on a connection of their own)."""
    app, base, api = mp
    with app.test_request_context():
        message = engine.accept(api_app_id=None, request_id="session-check-1", configured=channel.load(),
                                notification=Notification("h", "m"), targets=[engine.Target(OPENID_ALICE, "alice")])
        db.session.scalar(select(ApiApp.id))  # the caller reads: its transaction is open
        pending = AuditEntry(actor="caller", action="caller.own_work", target="-")
        db.session.add(pending)  # and adds work of its own, not committed yet
        transaction = db.session().get_transaction()
        engine.send_now(message)
        assert pending in db.session.new and db.session().get_transaction() is transaction
        data = answers.describe(message)
        assert [d["status"] for d in data["deliveries"]] == ["sent"]
        assert pending in db.session.new and db.session().get_transaction() is transaction
        db.session.rollback()  # the caller's own decision: its work was never written


def test_the_answer_is_what_was_written_without_reading_the_deliveries_back(mp):
    """A send answers from the outcomes it wrote itself: the same statuses, errcodes and sentences a
    read of the rows gives, and no SELECT of the deliveries on the way."""
    app, base, api = mp
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        statements.append(" ".join(statement.split()).lower())

    with app.test_request_context():
        caller = _caller()
        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            answer = sending.send(caller, SendRequest(Notification("Disk alert", "sda1 is 91% full"),
                                                      usernames=["alice", "carol", "nobody"]), "memory-answer-1")
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
        message = db.session.scalar(select(Message).where(Message.public_id == answer.data["message_id"]))
        read_back = answers.describe(message, ["nobody"])
    assert [(d["username"], d["status"], d["errcode"]) for d in answer.data["deliveries"]] == [
        ("alice", "sent", None), ("carol", "failed", 43004), ("nobody", "failed", None)]
    assert answer.data == read_back
    assert not [s for s in statements if s.startswith("select") and "from deliveries" in s], statements
