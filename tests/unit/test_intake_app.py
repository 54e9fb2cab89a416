"""The intake's ASGI app without a broker: backpressure answers, and bodies to records."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import Future
from typing import Any

import pytest

from logctl.intake import BadBody, Intake, IntakeOptions, records_of_body, request_prefix
from logctl.records import Level


class HeldDelivery:
    """A delivery whose confirms never come (or come at once with ``instant``)."""

    error: BaseException | None = None

    def __init__(self, instant: bool = False) -> None:
        self.instant = instant
        self.submitted: list[list[Any]] = []

    def submit(self, rows: list[Any]) -> Future[None]:
        self.submitted.append(rows)
        future: Future[None] = Future()
        if self.instant:
            future.set_result(None)
        return future

    def submit_then(self, rows: list[Any], done: Any) -> None:
        """As DeliveryThread's: ``done(error)`` once the rows are confirmed."""
        self.submit(rows).add_done_callback(lambda future: done(future.exception()))


async def _call(app: Intake, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/api/log",
        "raw_path": b"/api/log",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, json.loads(answer)


def call(app: Intake, body: bytes, **headers: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    return asyncio.run(_call(app, body, {"content-type": "application/x-ndjson", **headers}))


BODY = b'{"msg":"one"}\n{"msg":"two"}\n'


def test_a_202_only_once_every_record_is_confirmed() -> None:
    delivery = HeldDelivery(instant=True)
    app = Intake(IntakeOptions("127.0.0.1", 0), delivery, lambda: None)  # type: ignore[arg-type]
    status, _headers, answer = call(app, BODY)
    assert (status, answer) == (202, {"accepted": 2})
    held = Intake(IntakeOptions("127.0.0.1", 0, ack_timeout_s=0.05), HeldDelivery(), lambda: None)  # type: ignore[arg-type]
    status, headers, answer = call(held, BODY)
    assert status == 503 and headers["retry-after"] == "5" and "Idempotency-Key" in answer["error"]


def test_the_broker_away_is_503_with_retry_after_and_nothing_is_taken() -> None:
    delivery = HeldDelivery(instant=True)
    app = Intake(IntakeOptions("127.0.0.1", 0), delivery, lambda: "not connected")  # type: ignore[arg-type]
    status, headers, answer = call(app, BODY)
    assert (status, headers["retry-after"], answer["error"]) == (503, "5", "not connected")
    assert delivery.submitted == []


def test_too_many_bytes_awaiting_confirms_is_429() -> None:
    options = IntakeOptions("127.0.0.1", 0, max_inflight_bytes=len(BODY) * 2, ack_timeout_s=0.3)
    app = Intake(options, HeldDelivery(), lambda: None)  # type: ignore[arg-type]

    async def three_at_once() -> list[int]:
        headers = {"content-type": "application/x-ndjson"}
        first = [asyncio.create_task(_call(app, BODY, headers)) for _ in range(2)]
        await asyncio.sleep(0.05)  # those two hold their bytes while they wait for confirms
        third = await _call(app, BODY, headers)
        return [third[0], third[1]["retry-after"], *[(await t)[0] for t in first]]

    assert asyncio.run(three_at_once()) == [429, "1", 503, 503]
    assert app.inflight_bytes == 0  # released again


def test_a_wrong_token_is_401_and_the_right_one_names_the_service() -> None:
    delivery = HeldDelivery(instant=True)
    tokens = {"t" * 20: "billing"}
    app = Intake(IntakeOptions("127.0.0.1", 0, tokens=tokens), delivery, lambda: None)  # type: ignore[arg-type]
    assert call(app, BODY)[0] == 401
    assert call(app, BODY, authorization="Bearer " + "x" * 20)[0] == 401
    assert call(app, BODY, authorization="Bearer " + "t" * 20)[0] == 202
    assert {row[3] for row in delivery.submitted[0]} == {"billing"}


def test_records_take_the_parsers_defaults_and_keep_their_schema() -> None:
    body = json.dumps(
        [
            {"message": "full", "level": "error", "service": "api", "trace_id": "abc", "attrs": {"k": 1}},
            {"msg": "short", "timestamp": "2026-11-27T10:00:00Z", "user": "ann"},
            {"message": "mine", "id": "given-id"},
        ]
    ).encode()
    rows = records_of_body(body, "application/json", "web", "p")
    assert [r[0] for r in rows] == ["p-000000000000", "p-000000000001", "given-id"]
    assert rows[0][2:] == [Level.ERROR, "api", "full", "abc", {"k": 1}]
    assert rows[1][2:] == [Level.INFO, "web", "short", None, {"user": "ann"}]
    assert rows[1][1] == 1_795_773_600_000_000  # 2026-11-27T10:00:00Z


def test_an_idempotency_key_gives_a_retry_the_same_ids() -> None:
    assert request_prefix("order-17", "billing") == request_prefix("order-17", "billing")
    assert request_prefix("order-17", "billing") != request_prefix("order-17", "shop")
    assert request_prefix(None, "billing") != request_prefix(None, "billing")


@pytest.mark.parametrize(
    ("body", "media_type", "status"),
    [
        (b"", "application/json", 400),
        (b"[]", "application/json", 400),
        (b'{"msg":"x"}', "text/csv", 415),
        (b"{broken", "application/json", 400),
        (b'{"msg":"a"}\n{"msg":"b"}', "application/json", 200),  # NDJSON sent as JSON is taken
    ],
)
def test_bodies_that_cannot_be_taken_say_why(body: bytes, media_type: str, status: int) -> None:
    if status == 200:
        assert len(records_of_body(body, media_type, "s", "p")) == 2
        return
    with pytest.raises(BadBody) as caught:
        records_of_body(body, media_type, "s", "p")
    assert caught.value.status == status


def test_a_request_waiting_when_the_broker_goes_away_is_answered_503_after_the_grace_not_held() -> None:
    import time

    started = time.monotonic()
    state = {"away": None}

    def broker_state() -> str | None:
        if time.monotonic() - started > 0.3:  # the connection is found lost while the request waits
            state["away"] = "not connected to the broker"
        return state["away"]

    options = IntakeOptions("127.0.0.1", 0, ack_timeout_s=60, outage_grace_s=0.5)
    app = Intake(options, HeldDelivery(), broker_state)  # type: ignore[arg-type]
    status, headers, answer = call(app, BODY)
    waited = time.monotonic() - started
    assert status == 503 and headers["retry-after"] == "5"
    assert answer["error"].startswith("not connected to the broker while this request waited for its confirm")
    assert waited < 30  # answered after the outage grace, not held for the 60 s timeout


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"message": 42}, "message must be a string, not int 42"),
        ({"message": "x", "level": "loud"}, 'level "loud" is no level'),
        ({"message": "x", "timestamp": "yesterday"}, 'timestamp "yesterday" is no time'),
        ({"message": "x", "service": ["a"]}, "service must be a string, not list"),
    ],
)
def test_a_record_field_that_means_nothing_is_a_400_naming_it(record: dict[str, Any], reason: str) -> None:
    delivery = HeldDelivery(instant=True)
    app = Intake(IntakeOptions("127.0.0.1", 0), delivery, lambda: None)  # type: ignore[arg-type]
    status, _headers, answer = call(app, json.dumps(record).encode() + b"\n")
    assert status == 400 and delivery.submitted == []
    (bad,) = answer["records"]
    assert bad["index"] == 0 and bad["reason"].startswith(reason)


def test_other_keys_are_read_as_a_json_line_is() -> None:
    rows = records_of_body(
        b'{"msg": "x", "ts": "yesterday", "severity": "warning"}\n', "application/x-ndjson", "s", "p"
    )
    assert rows[0][2] is Level.WARN and rows[0][6] == {"ts": "yesterday"}  # kept, as ship keeps it
