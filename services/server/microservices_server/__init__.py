"""The app tier: a Flask app that keeps one counter in Redis, served by gunicorn."""

from .app import create_app

__all__ = ["create_app"]
