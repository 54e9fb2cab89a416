"""OTLP/HTTP logs on the intake (POST /v1/logs): the real OpenTelemetry SDK and its OTLP/HTTP
log exporter, JSON bodies by hand as the spec writes them, partial success, errors, retries."""

from __future__ import annotations

import gzip
import json
import logging
import re
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from tests.conftest import Env, run_logctl, start_logctl
from tests.integration.test_intake import Listener
from tests.numbered import assert_exactly_once, sequence_numbers

pytestmark = pytest.mark.integration


def stored(env: Env, tmp_path: Path) -> list[tuple[str, str, str, str | None, dict[str, object], str]]:
    db = tmp_path / "out.db"
    result = run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select message, level, service, trace_id, attrs, timestamp from records")
        return [(m, lvl, svc, tid, json.loads(a), ts) for m, lvl, svc, tid, a, ts in rows]


def post(url: str, body: bytes, content_type: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type, **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@pytest.mark.filterwarnings("ignore:`LoggingHandler` in `opentelemetry-sdk` is deprecated")
def test_the_sdk_exporter_ships_logging_records_with_levels_trace_ids_and_attributes(env: Env, tmp_path: Path) -> None:
    listener = Listener(env)
    try:
        provider = LoggerProvider(
            resource=Resource.create({"service.name": "checkout", "deployment.environment": "qa"})
        )
        exporter = OTLPLogExporter(endpoint=f"{listener.base}/v1/logs", compression=Compression.Gzip, timeout=30)
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_export_batch_size=64))
        logger = logging.getLogger("otlp-test")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
        logger.addHandler(handler)
        tracer = TracerProvider().get_tracer("otlp-test")
        trace_ids = {}
        try:
            for i in range(300):
                with tracer.start_as_current_span("work") as span:
                    level = (logging.INFO, logging.WARNING, logging.ERROR)[i % 3]
                    logger.log(level, "line %d of the export", i, extra={"order.id": i})
                    trace_ids[i] = format(span.get_span_context().trace_id, "032x")
            assert provider.force_flush(30_000)
        finally:
            logger.removeHandler(handler)
            provider.shutdown()
        err = listener.stop()
    finally:
        if listener.proc.poll() is None:
            listener.proc.kill()
    rows = stored(env, tmp_path)
    assert_exactly_once(sequence_numbers(m for m, *_ in rows), 300)
    for message, level, service, trace_id, attrs, _ts in rows:
        i = int(message.split()[1])
        assert level == ("INFO", "WARN", "ERROR")[i % 3] and service == "checkout"
        assert trace_id == trace_ids[i] and len(str(attrs["span_id"])) == 16
        assert attrs["order.id"] == i and attrs["resource"]["deployment.environment"] == "qa"  # type: ignore[index]
        assert attrs["otel.scope"]["name"] == "otlp-test"  # type: ignore[index]
    assert "http_records=300" in err


def json_export(*records: dict[str, object], service: str = "billing") -> bytes:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    return json.dumps(
        {
            "resourceLogs": [
                {"resource": resource, "scopeLogs": [{"scope": {"name": "lib"}, "logRecords": list(records)}]}
            ]
        }
    ).encode()


def test_json_bodies_partial_success_errors_and_a_retried_export_stored_once(env: Env, tmp_path: Path) -> None:
    listener = Listener(env)
    url = f"{listener.base}/v1/logs"
    try:
        body = json_export(
            {
                "timeUnixNano": "1764763200000000000",
                "severityNumber": 17,
                "body": {"stringValue": "card declined"},
                "traceId": "5B8EFFF798038103D269B633813FC60C",
                "spanId": "EEE19B7EC3C1B174",
                "attributes": [{"key": "attempt", "value": {"intValue": "3"}}],
            },
            {
                "severityText": "warning",
                "body": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}},
            },
            {"timeUnixNano": 1764763200000000000},  # nothing in it: rejected
        )
        status, answer, _ = post(url, body, "application/json")
        assert status == 200
        assert json.loads(answer) == {
            "partialSuccess": {
                "rejectedLogRecords": 1,
                "errorMessage": "1 log record(s) had no body, attributes or event name",
            }
        }
        again, _, _ = post(url, gzip.compress(body), "application/json", **{"Content-Encoding": "gzip"})
        assert again == 200  # the exporter's retry of the same export: its records are stored once
        bad, status_body, _ = post(url, b'{"resourceLogs": 5}', "application/json")
        assert bad == 400 and json.loads(status_body)["code"] == 3
        broken, proto_status, _ = post(url, b"\xff\xff\xff", "application/x-protobuf")
        assert broken == 400 and b"protobuf" in proto_status
        wrong, _, _ = post(url, b"{}", "text/plain")
        assert wrong == 415
        empty, empty_answer, _ = post(url, b"", "application/x-protobuf")
        assert (
            empty == 200
            and ExportLogsServiceResponse.FromString(empty_answer).partial_success.rejected_log_records == 0
        )
        listener.stop()
    finally:
        if listener.proc.poll() is None:
            listener.proc.kill()
    rows = sorted(stored(env, tmp_path))
    assert [(m, lvl, svc, tid) for m, lvl, svc, tid, _a, _t in rows] == [
        ("card declined", "ERROR", "billing", "5b8efff798038103d269b633813fc60c"),
        ('{"k":true}', "WARN", "billing", None),
    ]
    declined = rows[0]
    assert declined[4]["attempt"] == 3 and declined[4]["span_id"] == "eee19b7ec3c1b174"
    assert declined[5].startswith("2025-12-03T12:00:00")
    assert rows[1][4]["logctl.read_time"] is True


def test_an_export_while_the_broker_is_away_is_answered_503_with_retry_after(env: Env) -> None:
    away = Env({**env, "LOGCTL_URL": "amqp://guest:guest@127.0.0.1:5999//"})  # nothing listens there
    proc = start_logctl(["ship", "--listen", "127.0.0.1:0"], away, text=True)
    try:
        assert proc.stderr is not None
        found = None
        for _ in range(20):  # notices of the connection attempts may come first
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/api/log", proc.stderr.readline())
            if found:
                break
        assert found
        body = json_export({"body": {"stringValue": "x"}})
        status, answer, headers = post(f"{found.group(1)}/v1/logs", body, "application/json")
        assert status == 503 and headers.get("retry-after") == "5" and "not connected" in json.loads(answer)["message"]
    finally:
        proc.kill()
        proc.wait()
