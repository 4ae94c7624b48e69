"""The Flask application factory: one app, its runtime state, its blueprints.

GET    /                 {"count": N}                                  api.py
POST   /                 increment (empty body = 1, or {"increment": k}); Idempotency-Key
DELETE /                 reset to 0; needs X-API-Key
GET    /probe/liveness   200 while the process can serve; never touches Redis      probes.py
GET    /probe/readiness  200 when Redis answers PING, else 503; 503 once draining
GET    /metrics          Prometheus text format                                    metrics.py
GET    /                 for a browser (Accept: text/html first): the live page    page.py
GET    /api/status       the page's JSON: count, rate, history, the tiers' status
GET    /faults           the fault switches (FAULTS_ENABLED; PUT, DELETE /faults/x)  faults.py
Errors of every kind answer {"error": ...}                                         errors.py
"""

from __future__ import annotations

from flask import Flask

from . import api, errors, faults, json_answers, metrics, page, probes
from .asked_board import asked_board
from .fault_board import FaultBoard, fault_board
from .lifecycle import DrainFlag, drain_flag
from .seen import ClientsSeen
from .settings import Settings
from .state import EXTENSION, Runtime
from .store import CounterStore


def create_app(
    settings: Settings | None = None,
    store: CounterStore | None = None,
    draining: DrainFlag | None = None,
    board: FaultBoard | None = None,
) -> Flask:
    """Build the app. Without arguments (as gunicorn calls it) everything comes from the
    environment; tests pass their own settings, store, drain flag and fault board."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    # One byte past the limit, so that a body longer than the limit can be told from one of
    # exactly its size however it is sent (api.request_body checks the length).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    # No OPTIONS answers of Flask's own (an empty text/html 200): a 405 in JSON like any other.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    json_answers.install(app)
    store = store or CounterStore.from_settings(settings)
    app_metrics = metrics.Metrics()
    app.extensions[EXTENSION] = Runtime(
        settings=settings,
        store=store,
        metrics=app_metrics,
        # Under gunicorn: the flag the master sets on SIGTERM (shared with every worker).
        draining=draining or drain_flag(),
        # Under gunicorn: the board the master made (shared with every worker).
        seen=ClientsSeen(store.record_seen, asked_board()),
        # Under gunicorn: the board the master made (shared with every worker).
        faults=faults.make_faults(board or fault_board(), app_metrics)
        if settings.faults_enabled
        else None,
    )
    errors.init_app(app)
    metrics.init_app(app, app_metrics)
    page.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(probes.bp)
    # After the api blueprint: its hook noting the asking client runs before the switches'
    # (a counter whose increments a switch fails is still retrying).
    if settings.faults_enabled:
        faults.init_app(app)
    return app
