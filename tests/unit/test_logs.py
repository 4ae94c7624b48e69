import json
import logging
import logging.config
import time

from microservices_common.logs import JsonFormatter, TextFormatter, ledger_logger, logging_config


def record(message: str, **fields) -> logging.LogRecord:
    entry = logging.LogRecord("counter", logging.INFO, __file__, 1, message, None, None)
    entry.fields = {"event": "incremented", **fields}
    return entry


def test_text_keeps_every_field_even_when_the_message_says_it():
    line = TextFormatter("counter").format(
        record("Incremented by 10, count is now 49", increment=10, count=49, attempts=1)
    )
    assert line.endswith(
        "Incremented by 10, count is now 49 event=incremented increment=10 count=49 attempts=1"
    )


def test_json_holds_the_fields():
    entry = json.loads(JsonFormatter("counter").format(record("x", count=49)))
    assert entry["event"] == "incremented" and entry["count"] == 49
    assert entry["service"] == "counter" and entry["level"] == "info"


def test_the_ledger_is_written_whatever_log_level_says(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "error")
    logging.config.dictConfig(logging_config("counter"))
    try:
        service = logging.getLogger("counter")
        assert not service.isEnabledFor(logging.INFO)
        assert ledger_logger(service).isEnabledFor(logging.INFO)
    finally:
        monkeypatch.setenv("LOG_LEVEL", "info")
        logging.config.dictConfig(logging_config("counter"))


def test_each_line_carries_its_own_time_across_seconds():
    """The time text is cached per second: lines a second apart, or back in time (a clock
    stepped back), still show their own time, as logging's own formatter would."""
    text, as_json = TextFormatter("server"), JsonFormatter("server")
    plain = logging.Formatter("%(asctime)s %(levelname)s server %(message)s")
    for created in (1_700_000_000.25, 1_700_000_000.75, 1_700_000_001.5, 1_699_999_000.0):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
        record.created, record.msecs = created, (created % 1) * 1000
        assert text.format(record) == plain.format(record)
        utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        assert json.loads(as_json.format(record))["time"] == f"{utc}.{int(record.msecs):03d}Z"
