"""Domain errors raised by the core and the ingest use case; each dialect maps them to its own wire format.

Keeping one vocabulary of failures lets every dialect answer the same situation consistently while
speaking its own codes (Alibaba's numeric ``code``, IoTDA's ``IOTDA.xxxxxx``).
"""


class ThingportError(Exception):
    """Base of all domain errors; ``str(err)`` is a sentence safe to show to the client."""


class ParamError(ThingportError):
    """The request is malformed: bad JSON, a missing or invalid field, wrong content type, too large."""


class BodyTooLarge(ParamError):
    """The body is over the endpoint's limit."""


class SinkUnreachable(ParamError):
    """A new subscription's sink could not be reached, or refused its credentials (create it without the
    check for a sink that is not up yet)."""


class AuthFailed(ThingportError):
    """Device authentication failed: unknown device, bad signature, stale timestamp, disabled device."""


class TokenMissing(ThingportError):
    """No token was sent."""


class TokenExpired(ThingportError):
    """The token is authentic but past its validity."""


class TokenInvalid(ThingportError):
    """The token is forged, unknown, revoked, superseded, or belongs to another device."""


class TopicDenied(ThingportError):
    """The device may not publish to this topic."""


class StoreUnavailable(ThingportError):
    """Durable storage failed; nothing was acknowledged."""


class SessionStoreFailed(ThingportError):
    """The authentication session could not be recorded; no token was issued."""


class Throttled(ThingportError):
    """A rate limit was reached."""


class InstanceThrottled(Throttled):
    """A limit above the device was reached: the product's, the instance's (the tenant's), or a source
    address's auth attempts."""


class NotFound(ThingportError):
    """A management operation named a product or device that does not exist."""


class Conflict(ThingportError):
    """A management operation would create something that already exists."""


class TooManyChildren(ParamError):
    """A gateway request names more sub-devices than one request may carry."""


class NotAChild(ParamError):
    """A gateway request names a device that does not exist or is not the gateway's sub-device."""
