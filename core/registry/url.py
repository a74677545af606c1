"""Registry URLs: parse them with one-line errors, hide their passwords, and add one from the environment.

A PostgreSQL URL may carry a password, and a URL is shown in error lines, the scheduler banner,
the dashboard header and reports: every one of those goes through :func:`redact_url`. A password
can also stay out of the URL altogether: ``$HRM_DB_PASSWORD``, or libpq's own ``PGPASSFILE`` /
``~/.pgpass`` (libpq reads it whenever the URL has no password, so we never add an empty one).
"""

from __future__ import annotations

import os
import re

PASSWORD_ENV = "HRM_DB_PASSWORD"

_USERINFO_PASSWORD = re.compile(r"(?P<head>^[^:/?#]*://[^:/@?#]*):(?P<secret>[^/?#]*)@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)(?P<secret>[^&#]*)", re.IGNORECASE)
MASK = "***"


def redact_url(url: object) -> str:
    """``url`` with any password replaced by ``***`` (works on URLs too broken to parse)."""
    text = str(url)
    text = _USERINFO_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text, count=1)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)


def parse_url(url: str):
    """A SQLAlchemy ``URL`` for ``url``, or ``ValueError`` with a one-line, password-free reason."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"not a valid database URL {redact_url(url)!r} ({reason})") from None
    if not parsed.drivername:
        raise ValueError(f"not a valid database URL {redact_url(url)!r} (no database kind before '://')")
    return parsed


def with_env_password(parsed):
    """Add ``$HRM_DB_PASSWORD`` to a server URL that has no password of its own."""
    secret = os.environ.get(PASSWORD_ENV)
    if secret and parsed.password is None and parsed.get_backend_name() != "sqlite":
        return parsed.set(password=secret)
    return parsed
