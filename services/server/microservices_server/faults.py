"""Fault switches: break this pod on purpose, and watch Kubernetes react (FAULTS_ENABLED).

GET    /faults            every switch of this pod and its state
GET    /faults/<switch>   one switch
PUT    /faults/<switch>   turn it on (X-API-Key; a JSON object: its parameters and "for")
DELETE /faults/<switch>   turn it off (X-API-Key)

readiness  {}                       /probe/readiness answers 503: the pod leaves the Service
liveness   {"mode": "fail"|"hang"}  /probe/liveness answers 500, or never: the kubelet restarts
                                    the container (which starts with every switch off)
latency    {"ms": 1..10000}         each API request waits that long first
errors     {"ratio": 0..1, "status": 500|503}
                                    that share of API answers fail, before Redis is touched
                                    (nothing is counted; a 503 says Retry-After)
cpu        {}                       a child process burns about one core at the lowest
                                    priority: the CPU use rises (the HPA scales out) while
                                    the pod's own work goes first and the probes keep answering

Every switch takes "for" (seconds, default DEFAULT_SECONDS, at most MAX_SECONDS) and turns
itself off after it: a forgotten switch heals. "The API" is GET, POST and DELETE on / from an
API client: the probes, /metrics, the live page and /faults itself are never slowed or failed
by latency or errors. Every worker of the pod obeys (fault_board.py). With FAULTS_ENABLED off
(the default) none of this is registered: every /faults path is a 404.
"""

from __future__ import annotations

import json
import logging
import random
import time

from flask import Blueprint, Flask, Response, request
from microservices_common.identity import hostname
from microservices_common.logs import log_event
from prometheus_client.core import GaugeMetricFamily

from . import page
from .api import request_body, require_api_key
from .errors import ApiError
from .fault_board import OFF, SWITCHES, FaultBoard, SwitchState
from .fault_switches import (
    DEFAULT_SECONDS,
    ERROR_STATUSES,
    LIVENESS_MODES,
    MAX_LATENCY_MS,
    MAX_SECONDS,
    Faults,
)
from .metrics import Metrics
from .state import runtime

log = logging.getLogger("server")
bp = Blueprint("faults", __name__, url_prefix="/faults")

# -- the request's side: errors and latency on the API


def api_switches() -> tuple[SwitchState, SwitchState]:
    """(errors, latency) for this request: both off for what is not the API."""
    board = runtime().faults.board
    errors, latency = board.read("errors"), board.read("latency")
    if (errors.on or latency.on) and request.method == "GET" and page.wants_page():
        return OFF, OFF  # the live page is how a learner watches; it is not the API
    return errors, latency


def before_api_request():
    """Before each API view: fail, as the errors switch says (nothing is done)."""
    errors, _ = api_switches()
    if errors.on and random.random() < errors.first:  # noqa: S311 - not for security
        status = int(errors.second)
        headers = {"Retry-After": "1"} if status == 503 else {}
        raise ApiError(status, f"fault injected by the errors switch on {hostname()}", headers)


def after_api_request(response: Response) -> Response:
    """After each API view, before its answer goes: wait, as the latency switch says. After
    the view, not before: the body is read within BODY_TIMEOUT of the head however long the
    wait, and the requests a wait holds do not all reach Redis at the same moment after it."""
    _, latency = api_switches()
    if latency.on:
        time.sleep(latency.first / 1000)
    return response


# -- /faults


def switch_name(switch: str) -> str:
    if switch not in SWITCHES:
        raise ApiError(404, f"no such switch: {switch}; the switches: {', '.join(SWITCHES)}")
    return switch


@bp.get("")
def list_switches():
    return {"pod": hostname(), "switches": runtime().faults.describe_all()}


@bp.get("/<switch>")
def show_switch(switch: str):
    return runtime().faults.describe(switch_name(switch))


@bp.put("/<switch>")
def put_switch(switch: str):
    state = runtime()
    switch = switch_name(switch)
    require_api_key("the fault switches are disabled")
    settings = parse_settings(switch, request_body(request, state.settings.max_body_bytes))
    state.faults.switch_on(switch, settings)
    return state.faults.describe(switch)


@bp.delete("/<switch>")
def delete_switch(switch: str):
    state = runtime()
    switch = switch_name(switch)
    require_api_key("the fault switches are disabled")
    state.faults.switch_off(switch)
    return state.faults.describe(switch)


def make_faults(board: FaultBoard, metrics: Metrics) -> Faults:
    """The switches, each change logged (one line, its settings as fields) and counted."""

    def notify(switch: str, action: str, settings: dict) -> None:
        metrics.fault_changed(switch, action)
        details = " ".join(f"{key}={value}" for key, value in settings.items() if key != "for")
        message = {
            "on": f"fault switch {switch} on for {settings.get('for', 0):g} s {details}",
            "off": f"fault switch {switch} off",
            "expired": f"fault switch {switch} off: its time ran out",
        }[action]
        log_event(
            log, f"fault_{action}", message.rstrip(), logging.WARNING, switch=switch, **settings
        )

    return Faults(board, notify)


# -- the body of a PUT

FIELDS = {
    "readiness": set(),
    "liveness": {"mode"},
    "latency": {"ms"},
    "errors": {"ratio", "status"},
    "cpu": set(),
}


def parse_settings(switch: str, body: bytes) -> dict:
    """The switch's settings from a PUT body, every one checked, or a 4xx naming the field."""
    if body.strip():
        if request.mimetype != "application/json":
            raise ApiError(415, "the body must be JSON (Content-Type: application/json)")
        try:
            given = json.loads(body)
        except (ValueError, RecursionError):
            raise ApiError(400, "malformed JSON body") from None
    else:
        given = {}
    if not isinstance(given, dict):
        raise ApiError(400, "the body must be a JSON object")
    unknown = sorted(set(given) - FIELDS[switch] - {"for"})
    if unknown:
        known = ", ".join(sorted(FIELDS[switch] | {"for"}))
        raise ApiError(400, f"unknown field {unknown[0]!r} for {switch}: it takes {known}")
    settings = {"for": _number(given, "for", 1, MAX_SECONDS, DEFAULT_SECONDS)}
    if switch == "liveness":
        if given.get("mode") not in LIVENESS_MODES:
            raise ApiError(400, 'mode: must be "fail" or "hang"')
        settings["mode"] = given["mode"]
    elif switch == "latency":
        settings["ms"] = _number(given, "ms", 1, MAX_LATENCY_MS, integer=True)
    elif switch == "errors":
        settings["ratio"] = _number(given, "ratio", 0, 1)
        status = given.get("status", 500)
        if type(status) is not int or status not in ERROR_STATUSES:
            raise ApiError(400, "status: must be 500 or 503")
        settings["status"] = status
    return settings


def _number(
    given: dict,
    field: str,
    low: float,
    high: float,
    default: float | None = None,
    integer: bool = False,
) -> float:
    if field not in given and default is None:
        raise ApiError(400, f"{field}: required")
    value = given.get(field, default)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise ApiError(400, f"{field}: must be {kind} from {low:g} to {high:g}")
    return value


class SwitchesCollector:
    """faults_on{switch}: 1 while a switch is on in this pod, read from the board at each
    scrape (every worker answers alike)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    def collect(self):
        gauge = GaugeMetricFamily(
            "faults_on", "Fault switches on in this pod (1) or off (0).", labels=["switch"]
        )
        for switch in SWITCHES:
            gauge.add_metric([switch], 1.0 if self.faults.state(switch).on else 0.0)
        yield gauge


def init_app(app: Flask) -> None:
    """Serve /faults, put the latency and errors switches in front of the API (this app's
    own hook for the api blueprint: the blueprint object is shared by every app), and show
    the switches in /metrics."""
    state = runtime(app)
    app.before_request_funcs.setdefault("api", []).append(before_api_request)
    app.after_request_funcs.setdefault("api", []).append(after_api_request)
    app.register_blueprint(bp)
    state.metrics.add_collector(SwitchesCollector(state.faults))
