"""Device traffic, dialect-neutral: authenticate, check tokens, authorize topics, store durably.

Dialects parse their wire format and map the core's errors to their own codes; everything they share
(registry, tokens, throttling, the durable log) is here, once.
"""

import dataclasses
import datetime
import time
from collections.abc import Callable, Mapping

from thingport.core import signing
from thingport.core.errors import AuthFailed, ParamError, StoreUnavailable, TokenInvalid
from thingport.core.message_ids import MessageIdGenerator
from thingport.core.model import AuthSession, Device, Product, StoredMessage, ValuesAt
from thingport.core.ports import MessageLog, RegistryReader
from thingport.core.throttle import Rate
from thingport.core.tokens import (
    DIALECT_ALIYUN,
    DIALECT_HUAWEI,
    TokenClaims,
    TokenCodec,
    supersede,
    superseded_token_alive,
)
from thingport.metrics import DeviceMetrics
from thingport.settings import Settings
from thingport.state.presence import DIALECT as PRESENCE_DIALECT
from thingport.state.presence import PRESENCE_TOPIC, PresenceTracker, status_payload
from thingport.state.registry_cache import ProductRuntime, RegistryCache
from thingport.state.shared import SharedState, open_shared_state

_TOKEN_MEMO_MAX = 100_000


def _hour_stamp(at: datetime.datetime) -> str:
    return at.strftime("%Y%m%d%H")


def auth_bucket(product_key: str, device_name: str) -> str:
    """A device's one authentication bucket, whichever dialect names it (two would double its allowance)."""
    return f"{product_key}/{device_name}"


class Gateway:
    def __init__(
        self,
        settings: Settings,
        directory: RegistryReader,
        log: MessageLog,
        cache: RegistryCache,
        codec: TokenCodec,
        clock: Callable[[], float] = time.time,
        metrics: DeviceMetrics | None = None,
        shared: SharedState | None = None,
    ) -> None:
        """``shared``: rate limits and presence arbitration (default: what the settings ask for)."""
        self.settings = settings
        self.metrics = metrics or DeviceMetrics()
        self._directory = directory
        self._log = log
        self._cache = cache
        self._codec = codec
        self._clock = clock
        self._ids = MessageIdGenerator(settings.worker_id)
        self.shared = shared or open_shared_state(settings, clock)
        self.limits = self.shared.limits
        self._device_rates: dict[str, tuple[Product, Rate | None]] = {}  # product key -> (product, its rate)
        # Verified tokens: skips the base64 + HMAC work for a token seen before. Expiry and revocation
        # are still checked on every request (from the claims and the device cache).
        self._token_memo: dict[str, TokenClaims] = {}
        self.presence = PresenceTracker(self.emit_status, self.shared.arbiter, directory.recently_seen)

    @property
    def message_ids(self) -> MessageIdGenerator:
        return self._ids

    # --- authentication ---

    async def authenticate_aliyun(self, params: Mapping[str, str], sign_method: str, sign: str, source: str) -> str:
        """A token for the device that signed ``params``; AuthFailed (and nothing else) if it did not."""
        now = self._clock()
        product_key, device_name = params["productKey"], params["deviceName"]
        await self.limits.check_auth(auth_bucket(product_key, device_name), source)
        timestamp = params.get("timestamp")
        if timestamp is not None:
            skew_ms = abs(int(timestamp) - now * 1000)
            if skew_ms > self.settings.aliyun_timestamp_window_s * 1000:
                raise AuthFailed("timestamp is not within 15 minutes of server time")
        device = await self._directory.device_by_name(product_key, device_name)
        if device is None:
            raise AuthFailed("device does not exist")
        # the signature is checked before the state, so a disabled device does not tell probers it exists
        if not signing.aliyun_sign_matches(device.secret, params, sign_method, sign):
            raise AuthFailed("signature does not match")
        if not device.enabled:
            raise AuthFailed("device is disabled")
        self._cache.remember(device)
        await self._log.record_session(AuthSession(device.id, params["clientId"], source, int(now * 1000)))
        await self._came_online(device, int(now * 1000), "authenticated")
        claims = TokenClaims(
            DIALECT_ALIYUN, device.id, device.token_epoch, int(now * 1000), int(now) + self.settings.aliyun_token_ttl_s
        )
        return self._codec.issue(claims)

    async def authenticate_huawei(
        self, device_id: str, sign_type: int, timestamp: str, password: str, source: str
    ) -> tuple[str, int]:
        """(token, seconds it has left) for an IoTDA device; the device's previous token gets 30 s more.

        sign_type 0 is the platform's "do not check the time": its password, an HMAC keyed by the hour it
        names, never expires, so a captured one authenticates forever. Products (or the server) may
        require sign_type 1, whose hour must be the current one (or a neighbour)."""
        now = self._clock()
        known = self._cache.known_by_device_id(device_id)
        if known is not None:  # the device's own bucket, before any database round trip
            await self.limits.check_auth(auth_bucket(known.product_key, known.device_name), source)
        else:  # a guard on the name as given, until the registry says which device it is
            await self.limits.check_auth(f"iotda:{device_id}", source)
        if sign_type == 1:
            utc = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
            hour = datetime.timedelta(hours=1)
            if timestamp not in {_hour_stamp(utc - hour), _hour_stamp(utc), _hour_stamp(utc + hour)}:
                raise AuthFailed("timestamp is not the current UTC hour")
        device = await self._directory.device_by_device_id(device_id)  # fresh: auth is not the hot path
        if device is None:
            raise AuthFailed("device does not exist")
        if known is None:
            self._cache.remember(device)  # its next attempt finds its bucket from memory
            await self.limits.check_device_auth(auth_bucket(device.product_key, device.device_name), source)
        if not signing.huawei_password_matches(device.secret, timestamp, password):
            raise AuthFailed("password does not match")
        if not device.enabled:
            raise AuthFailed("device is disabled")
        if sign_type == 0 and await self._requires_sign_type_1(device):  # after the password: no probing
            raise AuthFailed("sign_type 0 is not allowed for this product: use sign_type 1 (time-checked)")
        now_ms = int(now * 1000)
        await self._log.record_session(AuthSession(device.id, device_id, source, now_ms, supersedes=True))
        newest, superseded = supersede(device.token_ms, device.superseded_tokens, now_ms)
        self._cache.remember(dataclasses.replace(device, token_ms=newest, superseded_tokens=superseded))
        await self._came_online(device, now_ms, "authenticated")
        expires_s = int(now) + self.settings.huawei_token_ttl_s
        token = self._codec.issue(TokenClaims(DIALECT_HUAWEI, device.id, device.token_epoch, now_ms, expires_s))
        return token, int(expires_s - now)

    async def _requires_sign_type_1(self, device: Device) -> bool:
        runtime = await self._cache.product(device.product_key)  # from memory after the first use
        required = runtime.product.require_sign_type_1 if runtime is not None else None
        return self.settings.huawei_require_sign_type_1 if required is None else required

    def keys_changed(self) -> None:
        """The signing keys changed (rotation, prune): tokens must be verified anew."""
        self._token_memo.clear()

    async def device_for_token(self, token: str, dialect: int) -> Device:
        """The live device a token speaks for; TokenExpired or TokenInvalid otherwise."""
        now = self._clock()
        claims = self._token_memo.get(token)
        if claims is None:
            claims = self._codec.verify(token, now)
            if len(self._token_memo) >= _TOKEN_MEMO_MAX:
                self._token_memo.clear()
            self._token_memo[token] = claims
        elif now >= claims.expires_s:
            self._codec.verify(token, now)  # raises TokenExpired
        if claims.dialect != dialect:
            raise TokenInvalid("token was issued for another protocol")
        device = self._cache.get(claims.device_id)
        if device is None:
            device = await self._cache.load(claims.device_id)
            if device is None:
                raise TokenInvalid("token's device no longer exists")
        if not device.enabled:
            raise TokenInvalid("device is disabled")
        if device.token_epoch != claims.epoch:
            raise TokenInvalid("token was revoked")
        if device.token_ms is not None and claims.dialect == DIALECT_HUAWEI and claims.issued_ms < device.token_ms:
            # superseded: it lives 30 s from the moment the next token was issued
            if not superseded_token_alive(device.superseded_tokens, claims.issued_ms, now * 1000):
                raise TokenInvalid("token was superseded by a newer one")
        return device

    async def device_by_device_id(self, device_id: str) -> Device | None:
        return await self._cache.by_device_id(device_id)

    # --- reporting ---

    async def throttle_report(self, device: Device, runtime: ProductRuntime | None = None) -> None:
        """Spend one report of ``device`` (Throttled, InstanceThrottled); ``runtime``: its product, if at hand."""
        product = (runtime or await self.product(device)).product
        memo = self._device_rates.get(product.product_key)
        if memo is None or memo[0] is not product:
            memo = self._device_rates[product.product_key] = (product, self._device_rate(product))
        await self.limits.check_report(device, memo[1])

    def _device_rate(self, product: Product) -> Rate | None:
        """The product's own device report rate, None for the server's (either field may be left to it)."""
        rate, burst = product.device_report_rate, product.device_report_burst
        if rate is None and burst is None:
            return None
        return Rate(rate or self.settings.device_report_rate, burst or self.settings.device_report_burst)

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def product(self, device: Device) -> ProductRuntime:
        """The device's product with its compiled model (from memory after the first use)."""
        runtime = await self._cache.product(device.product_key)
        if runtime is None:  # a device cannot outlive its product; the registry would be corrupt
            raise StoreUnavailable(f"product {device.product_key} is missing")
        return runtime

    async def store(
        self,
        device: Device,
        dialect: str,
        topic: str,
        kind: str,
        payload: bytes,
        received_ms: int,
        reply: bytes | None = None,
        properties: tuple[ValuesAt, ...] = (),
    ) -> int:
        """Append a message (and the property values it carried) durably; returns its id once committed."""
        message = self.message(device, dialect, topic, kind, payload, received_ms, reply, properties)
        await self.store_many(((device, message),))
        return message.message_id

    def message(
        self, device: Device, dialect: str, topic: str, kind: str, payload: bytes, received_ms: int,
        reply: bytes | None = None, properties: tuple[ValuesAt, ...] = (),
    ) -> StoredMessage:
        """A message with a fresh id, for ``store_many``. Its device time is the first sample's, when the
        device gave one."""
        device_ms = next((group.time_ms for group in properties if group.time_ms != received_ms), None)
        return StoredMessage(
            self._ids.next_id(), device.id, device.product_key, device.device_name, dialect, topic, payload,
            received_ms, kind, reply, device_ms, device.device_id, 0, properties,
        )

    async def store_many(self, pairs: tuple[tuple[Device, StoredMessage], ...]) -> None:
        """Append messages in one transaction (each after an "online" status message when its device was
        offline): all are committed before this returns, or none."""
        if not pairs:
            raise ParamError("nothing to store")
        if len(pairs) == 1 and self.presence.touch(pairs[0][0].id, pairs[0][1].received_ms):
            await self._log.append(pairs[0][1])  # the common case: one report of an online device
            self.metrics.stored(pairs[0][1].dialect)
            return
        batch: list[StoredMessage] = []
        newly_online: list[Device] = []
        for device, message in pairs:
            if not self.presence.touch(device.id, message.received_ms):
                timeout_ms = await self._presence_timeout_ms(device)
                if self.presence.seen(device, message.received_ms, timeout_ms) and await self.presence.claim(
                    device, timeout_ms
                ):
                    newly_online.append(device)
                    batch.append(self._status_message(device, "online", message.received_ms, "reported"))
            batch.append(message)
        try:
            if len(batch) == 1:
                await self._log.append(batch[0])
            else:
                await self._log.append_many(tuple(batch))
        except BaseException:
            for device in newly_online:  # its "online" was not stored: the next success says it again
                await self.presence.unclaim(device)
            raise
        self.metrics.stored(pairs[0][1].dialect, len(pairs))

    # --- presence ---

    async def _presence_timeout_ms(self, device: Device) -> int:
        runtime = await self._cache.product(device.product_key)
        seconds = runtime.product.presence_timeout_s if runtime is not None else None
        return int((seconds or self.settings.presence_timeout_s) * 1000)

    def _status_message(self, device: Device, status: str, at_ms: int, reason: str) -> StoredMessage:
        return StoredMessage(
            self._ids.next_id(), device.id, device.product_key, device.device_name, PRESENCE_DIALECT,
            PRESENCE_TOPIC, status_payload(status, at_ms, reason), at_ms, "status", None, None, device.device_id,
        )

    async def emit_status(self, device: Device, status: str, at_ms: int, reason: str) -> None:
        await self._log.append(self._status_message(device, status, at_ms, reason))

    async def _came_online(self, device: Device, at_ms: int, reason: str) -> None:
        timeout_ms = await self._presence_timeout_ms(device)
        if self.presence.seen(device, at_ms, timeout_ms) and await self.presence.claim(device, timeout_ms):
            try:
                await self.emit_status(device, "online", at_ms, reason)
            except BaseException:
                await self.presence.unclaim(device)
                raise

    async def resume_presence(self) -> int:
        """After a restart: devices seen within their timeout are online until their silence runs out."""
        longest = max([self.settings.presence_timeout_s] + [
            p.presence_timeout_s for p in await self._directory.list_products() if p.presence_timeout_s
        ])
        now_ms = self.now_ms()
        resumed = 0
        for device_id, last_seen in await self._directory.recently_seen(now_ms - int(longest * 1000)):
            device = await self._cache.load(device_id)
            if device is not None:
                self.presence.resume(device, last_seen, await self._presence_timeout_ms(device))
                resumed += 1
        return resumed
