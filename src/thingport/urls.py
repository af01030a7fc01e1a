"""URLs that carry credentials (database, brokers), shown without their password."""

from urllib.parse import urlsplit, urlunsplit


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages and banners."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))
    except ValueError:
        return "<unparsable url>"
