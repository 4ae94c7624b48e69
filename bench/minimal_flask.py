"""The stack's own ceiling: Flask with one INCRBY per POST and nothing else (no validation,
metrics, idempotency or probes). scripts/benchmark serves it under the project's gunicorn
configuration, so the gap to microservices-server is what the server's own code costs."""

import os

import redis
from flask import Flask, request

app = Flask(__name__)
store = redis.Redis.from_url(os.environ["REDIS_URL"])


@app.post("/")
def increment():
    amount = (request.get_json(silent=True) or {}).get("increment", 1)
    return {"count": store.incrby("{microservices}:count", amount)}


@app.get("/probe/readiness")
def readiness():
    return {"status": "ready"}
