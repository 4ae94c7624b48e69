"""The app tier: a Flask app that keeps one counter in Redis, served by gunicorn.

The factory is `microservices_server.app:create_app`. Nothing is imported here on purpose:
gunicorn's master imports this package (for gunicorn_conf) and must not import the app, and
with it prometheus_client, before the workers are forked (see lifecycle.py).
"""
