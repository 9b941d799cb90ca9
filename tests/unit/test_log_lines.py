"""The daemon's log lines: one JSON object per line, the same whichever way
the formatter takes (scaler's own lines take a short way: two per write at
a window edge), with tracebacks and library records still complete."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import pytest
import structlog

from scaler.run.observability import configure_logging


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def printed():
    """(the lines the daemon's handler printed, the records it was given)."""
    root = logging.getLogger()
    saved = root.handlers, root.level
    configure_logging(log_format="json", level="info")
    stream, records = io.StringIO(), _Records()
    root.handlers[0].setStream(stream)
    root.addHandler(records)
    try:
        yield lambda: stream.getvalue().splitlines(), records.records
    finally:
        root.handlers, level = saved
        root.setLevel(level)


#: What structlog's own formatter prints: the oracle for every line.
ORACLE = structlog.stdlib.ProcessorFormatter(
    foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                       structlog.processors.TimeStamper(fmt="iso", utc=True)],
    processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer()])

EVENTS = [
    {},
    {"namespace": "ml", "workload": "llm", "replicas_before": 8, "replicas_after": 0, "dry_run": False},
    {"reason": 'quotes " and \\ and \n a newline, ünïcödé, 日本', "gpus": 2.5, "note": None},
    {"nested": {"a": [1, 2, {"b": "c"}]}, "at": datetime(2026, 12, 5, 10, 0, tzinfo=UTC), "kind": object()},
]


@pytest.mark.parametrize("fields", EVENTS)
def test_a_line_of_scaler_s_own_is_what_structlog_s_formatter_prints(printed, fields):
    lines, records = printed
    structlog.get_logger("scaler").warning("writing", **fields)
    [line], [record] = lines(), records
    assert line == ORACLE.format(record)
    parsed = json.loads(line)
    assert (parsed["event"], parsed["level"]) == ("writing", "warning")
    assert parsed.get("replicas_before") == fields.get("replicas_before")


def test_an_exception_line_carries_its_traceback(printed):
    lines, _ = printed
    try:
        raise ValueError("the cause")
    except ValueError:
        structlog.get_logger("scaler").exception("scheduled job failed", job="reconcile")
    [line] = lines()
    parsed = json.loads(line)
    assert parsed["job"] == "reconcile" and parsed["level"] == "error"
    assert "Traceback" in parsed["exception"] and "ValueError: the cause" in parsed["exception"]


def test_a_library_line_is_json_with_its_logger_and_level(printed):
    lines, records = printed
    logging.getLogger("apscheduler.scheduler").warning("job %s missed by %d s", "edge", 3)
    [line], [record] = lines(), records
    parsed = json.loads(line)
    assert (parsed["event"], parsed["logger"], parsed["level"]) == ("job edge missed by 3 s",
                                                                    "apscheduler.scheduler", "warning")
    stamped_when_printed = {"timestamp": ""}
    assert {**parsed, **stamped_when_printed} == {**json.loads(ORACLE.format(record)), **stamped_when_printed}


def test_a_reason_naming_many_windows_goes_whole_into_the_event(fake, prometheus, log):
    """20 keep-up windows with outside: down: three are named, the rest counted, so the
    log line's reason is in the Event whole (its record on the object keeps 1,024 characters)."""
    from tests.fakes.bodies import deployment, namespace
    from tests.unit.running import Passes, policies

    windows = "\n".join(f"        - {{name: shift-{d}-{h}, mode: up, when: \"{d} {h:02d}:00-{h:02d}:30\"}}"
                        for d in ("Mon", "Tue", "Wed", "Thu") for h in (8, 10, 12, 14, 16))
    text = ("policies:\n  - name: shifts\n    targets: {namespaces: [llm], selector: app=chat}\n"
            "    schedule:\n      timezone: Europe/Berlin\n      outside: down\n      windows:\n"
            f"{windows}\n    startup_grace: 0s\n")
    namespace(fake, "llm")
    fake.create("deployments.apps", deployment("chat", replicas=2), namespace="llm")
    now = datetime(2026, 12, 5, 22, 0, tzinfo=UTC)  # a Saturday night
    daemon = Passes(fake, prometheus.url, policies(text), now=now)
    try:
        daemon.seen("chat")
        daemon.step(now)
        assert daemon.sink.flush(timeout_seconds=5) == 0
    finally:
        daemon.stop()
    [line] = log.lines("decision", lambda line: line.get("action") == "pause")
    [event] = fake.events("llm", "chat", "ScaledToZero")
    assert "; and 17 more) with outside: down: pausing 2 replicas" in line["reason"]
    assert line["reason"] in event["message"]
