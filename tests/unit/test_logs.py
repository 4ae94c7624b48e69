import json
import logging
import logging.config

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
