"""LogctlHandler and the request middleware in real applications (subprocesses), counted in the sink."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Env, run_logctl

pytestmark = pytest.mark.integration


def run_app(source: str, env: Env, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a small Python application as its own process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stored(env: Env, tmp_path: Path, columns: str = "level, service, message, trace_id, attrs") -> list[tuple]:
    db = tmp_path / "out.db"
    result = run_logctl(["consume", "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as conn:
        return conn.execute(f"select {columns} from records order by id").fetchall()


def test_a_script_ships_its_records_and_flushes_them_at_exit(env: Env, tmp_path: Path) -> None:
    app = run_app(
        """
        import logging
        from logctl.handler import LogctlHandler

        log = logging.getLogger("shop.cart")
        log.setLevel(logging.DEBUG)
        log.addHandler(LogctlHandler(service="shop"))
        for i in range(500):
            log.info("item %d added", i, extra={"cart_id": 42, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})
        log.warning("slow")
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("checkout failed")
        log.critical("gone", extra={"service": "payments"})
        # no flush, no close: logging.shutdown at exit must deliver all of them
        """,
        env,
    )
    assert app.returncode == 0, app.stderr
    assert app.stderr == ""
    rows = stored(env, tmp_path)
    assert len(rows) == 503
    assert rows[0] == (
        "INFO",
        "shop",
        "item 0 added",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        '{"logger":"shop.cart","cart_id":42}',
    )
    levels = {r[2].split("\n")[0]: (r[0], r[1]) for r in rows[500:]}
    assert levels == {"slow": ("WARN", "shop"), "checkout failed": ("ERROR", "shop"), "gone": ("FATAL", "payments")}
    failed = next(r for r in rows if r[2].startswith("checkout failed"))
    assert "ZeroDivisionError: division by zero" in failed[2] and "Traceback" in failed[2]


def test_dictconfig_sets_it_up(env: Env, tmp_path: Path) -> None:
    app = run_app(
        """
        import logging.config

        logging.config.dictConfig({
            "version": 1,
            "handlers": {
                "logctl": {"class": "logctl.handler.LogctlHandler", "service": "billing", "capacity": 5000},
            },
            "root": {"level": "INFO", "handlers": ["logctl"]},
        })
        logging.getLogger("billing.invoices").info("invoice %s sent", "A-17")
        """,
        env,
    )
    assert app.returncode == 0, app.stderr
    assert stored(env, tmp_path, "service, message") == [("billing", "invoice A-17 sent")]


def test_a_forked_child_ships_its_own_records_once(env: Env, tmp_path: Path) -> None:
    """gunicorn --preload: the handler is made (and used) before the fork."""
    app = run_app(
        """
        import logging, os
        from logctl.handler import LogctlHandler

        log = logging.getLogger("web")
        log.setLevel(logging.INFO)
        log.addHandler(LogctlHandler(service="web"))
        log.info("parent before fork")
        pid = os.fork()
        if pid == 0:
            log.info("child %d", os.getpid())
            logging.shutdown()
            os._exit(0)
        os.waitpid(pid, 0)
        log.info("parent after fork")
        """,
        env,
    )
    assert app.returncode == 0, app.stderr
    messages = sorted(m for (m,) in stored(env, tmp_path, "message"))
    assert len(messages) == 3 and messages[0].startswith("child ")
    assert messages[1:] == ["parent after fork", "parent before fork"]


def test_the_asgi_middleware_logs_each_request(env: Env, tmp_path: Path) -> None:
    script = tmp_path / "asgi_app.py"
    script.write_text(
        textwrap.dedent(
            """
            import logging, sys, threading, time, urllib.request, urllib.error
            import uvicorn
            from starlette.applications import Starlette
            from starlette.responses import PlainTextResponse
            from starlette.routing import Route
            from logctl.handler import LogctlHandler
            from logctl.middleware import LogctlASGIMiddleware

            logging.getLogger("logctl.access").addHandler(LogctlHandler(service="storefront"))
            logging.getLogger("logctl.access").setLevel(logging.INFO)

            async def hello(request):
                return PlainTextResponse("hi")

            async def boom(request):
                raise RuntimeError("boom")

            app = LogctlASGIMiddleware(Starlette(routes=[Route("/hello", hello), Route("/boom", boom)]))
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.05)
            port = server.servers[0].sockets[0].getsockname()[1]
            base = f"http://127.0.0.1:{port}"
            headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
            urllib.request.urlopen(urllib.request.Request(base + "/hello", headers=headers)).read()
            for path in ("/missing", "/boom"):
                try:
                    urllib.request.urlopen(base + path)
                except urllib.error.HTTPError:
                    pass
            server.should_exit = True
            thread.join()
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows = stored(env, tmp_path)
    by_path = {json.loads(r[4])["http_path"]: r for r in rows}
    assert set(by_path) == {"/hello", "/missing", "/boom"}
    hello = by_path["/hello"]
    assert hello[0:2] == ("INFO", "storefront") and hello[2].startswith("GET /hello 200 ")
    assert hello[3] == "0af7651916cd43dd8448eb211c80319c"
    attrs = json.loads(hello[4])
    assert attrs["http_status"] == 200 and attrs["client"] == "127.0.0.1" and attrs["duration_ms"] >= 0
    assert by_path["/missing"][0] == "WARN" and json.loads(by_path["/missing"][4])["http_status"] == 404
    assert by_path["/boom"][0] == "ERROR" and json.loads(by_path["/boom"][4])["http_status"] == 500


def test_the_wsgi_middleware_logs_each_request(env: Env, tmp_path: Path) -> None:
    app = run_app(
        """
        import logging, threading, urllib.request
        from wsgiref.simple_server import make_server, WSGIRequestHandler
        from logctl.handler import LogctlHandler
        from logctl.middleware import LogctlWSGIMiddleware

        logging.getLogger("logctl.access").addHandler(LogctlHandler(service="legacy"))
        logging.getLogger("logctl.access").setLevel(logging.INFO)

        def app(environ, start_response):
            start_response("201 Created", [("Content-Type", "text/plain")])
            return [b"made"]

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args):
                pass

        server = make_server("127.0.0.1", 0, LogctlWSGIMiddleware(app), handler_class=Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        request = urllib.request.Request(f"http://127.0.0.1:{server.server_port}/orders", method="POST", data=b"x",
                                         headers={"X-Request-Id": "req-9"})
        assert urllib.request.urlopen(request).status == 201
        server.shutdown()
        """,
        env,
    )
    assert app.returncode == 0, app.stderr
    [(level, service, message, trace_id, attrs)] = stored(env, tmp_path)
    assert (level, service, trace_id) == ("INFO", "legacy", "req-9")
    assert message.startswith("POST /orders 201 ")
    assert json.loads(attrs)["http_method"] == "POST"


def test_the_trace_id_of_the_active_opentelemetry_span(env: Env, tmp_path: Path) -> None:
    app = run_app(
        """
        import logging
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from logctl.handler import LogctlHandler

        trace.set_tracer_provider(TracerProvider())
        log = logging.getLogger("traced")
        log.setLevel(logging.INFO)
        log.addHandler(LogctlHandler(service="traced"))
        with trace.get_tracer("test").start_as_current_span("checkout") as span:
            print(format(span.get_span_context().trace_id, "032x"))
            log.info("inside the span")
        log.info("outside")
        """,
        env,
    )
    assert app.returncode == 0, app.stderr
    trace_id = app.stdout.strip()
    assert len(trace_id) == 32
    assert sorted(stored(env, tmp_path, "message, trace_id")) == [("inside the span", trace_id), ("outside", None)]


UNREACHABLE_APP = """
import json, logging, sys, time
from logctl.handler import LogctlHandler

overflow, spill = sys.argv[1], sys.argv[2]
handler = LogctlHandler(service="app", flush_timeout=2, overflow=overflow, spill_path=spill)
log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.addHandler(handler)
slowest = 0.0
for i in range(500):
    started = time.perf_counter()
    log.info("record %d", i)
    slowest = max(slowest, time.perf_counter() - started)
logging.shutdown()  # what interpreter exit does: flush, then close
h = handler
print(json.dumps(dict(slowest=slowest, submitted=h.submitted, delivered=h.delivered, dropped=h.dropped,
                      spilled=h.spilled, pending=h.pending)))
"""


@pytest.mark.parametrize("overflow", ["drop-newest", "spill"])
def test_with_no_broker_every_record_is_accounted_for_and_the_reason_said(
    env: Env, tmp_path: Path, overflow: str
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spill = tmp_path / "spill.jsonl"
    app = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(UNREACHABLE_APP), overflow, str(spill)],
        env={**os.environ, **env, "LOGCTL_URL": f"amqp://guest:guest@127.0.0.1:{port}//"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert app.returncode == 0, app.stderr
    counts = json.loads(app.stdout)
    assert counts["slowest"] < 0.05  # emit never waits for the broker
    lost = "spilled" if overflow == "spill" else "dropped"
    assert counts == {**counts, "submitted": 500, "delivered": 0, lost: 500, "pending": 0}
    assert counts["submitted"] == counts["delivered"] + counts["dropped"] + counts["spilled"] + counts["pending"]
    (line,) = [line for line in app.stderr.splitlines() if line.startswith("logctl handler:")]
    assert f"500 of 500 record(s) not delivered (the broker at 127.0.0.1:{port} could not be reached since" in line
    assert "connection refused" in line
    if overflow == "drop-newest":
        assert line.endswith("; dropped")
        return
    assert line.endswith(f"; spilled 500 to {spill}")
    shipped = run_logctl(["ship", "--no-follow", str(spill)], env)  # the spill, shipped as the README says
    assert shipped.returncode == 0, shipped.stderr
    messages = sorted(row[0] for row in stored(env, tmp_path, "message"))
    assert messages == sorted(f"record {i}" for i in range(500))
