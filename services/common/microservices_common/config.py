"""Reading settings from the environment, once, with one clear error per bad value.

Every service reads its settings at start through these functions. A bad value raises
ConfigError naming the variable; `exit_on_config_error` turns that into one line on stderr
and exit code 2, so a typo in a manifest fails the container at once instead of at 3 a.m.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

EXIT_CONFIG = 2

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting from the environment is not usable."""

    def __init__(self, name: str, value: str, reason: str):
        super().__init__(f"{name}={value!r}: {reason}")
        self.name = name


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    # An empty variable (NAME= in a .env file) means "not set": use the default.
    return value if value not in (None, "") else None


def env_str(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None else value


def env_number(
    name: str,
    default: T,
    kind: Callable[[str], T],
    minimum: float | None = None,
    maximum: float | None = None,
) -> T:
    """An int or float setting, checked against an inclusive range."""
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ConfigError(name, raw, f"not a valid {kind.__name__}") from None
    if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite
        raise ConfigError(name, raw, "not a finite number")
    if minimum is not None and value < minimum:
        raise ConfigError(name, raw, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(name, raw, f"must be at most {maximum}")
    return value


def env_int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    return env_number(name, default, int, minimum, maximum)


def env_float(
    name: str, default: float, minimum: float | None = None, maximum: float | None = None
) -> float:
    return env_number(name, default, float, minimum, maximum)


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).strip().lower()
    if value not in choices:
        raise ConfigError(name, value, f"must be one of {', '.join(choices)}")
    return value


def env_url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    """A URL with one of `schemes` and a host; the port, when given, must be a number.

    Hosts with dots (``app-tier.my-namespace``) are fine: Kubernetes DNS names look like that.
    """
    value = env_str(name, default).strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ConfigError(name, value, f"malformed URL ({exc})") from None
    if parts.scheme not in schemes:
        raise ConfigError(name, value, f"URL scheme must be one of {', '.join(schemes)}")
    if not parts.hostname and parts.scheme != "unix":
        raise ConfigError(name, value, "URL has no host")
    return value.rstrip("/")


def exit_on_config_error(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate a command's main(): a ConfigError prints one line and exits with code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except ConfigError as exc:
            print(f"configuration error: {exc}", file=sys.stderr, flush=True)
            sys.exit(EXIT_CONFIG)

    return wrapper
