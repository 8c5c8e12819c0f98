"""Storage URLs with their secrets hidden, for reprs, logs and error messages."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_OPTIONS = frozenset({"secret_key", "password"})


def masked(url: str) -> str:
    """``url`` with its password and secret options shown as ``***``.

    >>> masked("postgresql://bob:hunter2@db/test?secret_key=00ff&prefix=x")
    'postgresql://bob:***@db/test?secret_key=***&prefix=x'
    >>> masked("memory://")
    'memory://'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k in SECRET_OPTIONS for k, _ in pairs):
            shown = [(k, "***" if k in SECRET_OPTIONS else v) for k, v in pairs]
            query = urlencode(shown, safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))
