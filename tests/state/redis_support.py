"""Helpers of the Redis tests: the real Redis at 127.0.0.1:6379 (skipped without it, failed in CI), names
of their own (other test runs share the server), and a Redis client to look at what they left there."""

import uuid

from tests.bus.services import require_service

REDIS = ("Redis", "127.0.0.1", 6379)
URL = "redis://127.0.0.1:6379/0"


def require_redis() -> None:
    require_service(*REDIS)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def unique_id() -> int:
    """A device id no other test run uses (ids are the keys of the buckets and presence claims)."""
    return 10**15 + uuid.uuid4().int % 10**15
