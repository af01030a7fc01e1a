"""The device side's use case: authenticate a device, and run a report, once for every dialect.

A report is token -> ACL -> throttle -> body -> validate -> store, in that order: a device refused before the
body never has it read. Dialects decode their wire format into the terms of ``ingest/ports.py`` and encode
the outcome; what differs between them (credential schemes, routes, payload rules) they pass in.
"""

import time
from collections.abc import Callable
from typing import Any

import msgspec

from thingport.core.errors import AuthFailed, NotAChild, ParamError, StoreUnavailable, TokenInvalid
from thingport.core.message_ids import MessageIdGenerator
from thingport.core.model import AuthSession, Device, Product, StoredMessage, ValuesAt
from thingport.core.ports import MessageLog, RegistryReader
from thingport.core.product_runtime import ProductRuntime
from thingport.core.throttle import Rate
from thingport.core.tokens import TokenClaims, TokenCodec, supersede, superseded_token_alive
from thingport.core.validation import Verdict, verdict
from thingport.ingest.ports import (
    Address,
    BodyReader,
    Credential,
    ReportRules,
    Route,
    Session,
    Stored,
    TokenScheme,
    auth_bucket,
)
from thingport.metrics import DeviceMetrics
from thingport.settings import Settings
from thingport.state.presence import DIALECT as PRESENCE_DIALECT
from thingport.state.presence import PRESENCE_TOPIC, PresenceTracker, status_payload
from thingport.state.registry_cache import RegistryCache
from thingport.state.shared import SharedState, open_shared_state

_TOKEN_MEMO_MAX = 100_000
RESUME_CHUNK = 5_000  # devices loaded per round trip when presence resumes after a restart


class DeviceIngest:
    """Device traffic, dialect-neutral: authentication, token checks, the report sequence, presence, the
    durable store. Implements ``ingest.ports.Ingest``."""

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

    async def authenticate(self, credential: Credential, source: str) -> Session:
        """A token for the device that made ``credential`` (a superseding scheme's previous token gets 30 s
        more); AuthFailed (and nothing else but Throttled) if it did not."""
        now = self._clock()
        bucket = credential.bucket(self._cache)
        await self.limits.check_auth(bucket, source)  # before any database round trip
        credential.check_time(now, self.settings)
        device = await credential.find(self._directory)  # fresh: auth is not the hot path
        if device is None:
            raise AuthFailed("device does not exist")
        own_bucket = auth_bucket(device.product_key, device.device_name)
        if bucket != own_bucket:  # charged a guard on the name as given: now the device's own bucket
            self._cache.remember(device)  # its next attempt finds its bucket from memory
            await self.limits.check_device_auth(own_bucket, source)
        # the signature is checked before the state, so a disabled device does not tell probers it exists
        credential.check_secret(device.secret)
        if not device.enabled:
            raise AuthFailed("device is disabled")
        credential.admit((await self.product(device)).product, self.settings)
        now_ms = int(now * 1000)
        tokens = credential.tokens
        await self._log.record_session(
            AuthSession(device.id, credential.client_id, source, now_ms, supersedes=tokens.supersedes)
        )
        if tokens.supersedes:
            newest, superseded = supersede(device.token_ms, device.superseded_tokens, now_ms)
            self._cache.remember(msgspec.structs.replace(device, token_ms=newest, superseded_tokens=superseded))
        else:
            self._cache.remember(device)
        await self._came_online(device, now_ms, "authenticated")
        expires_s = int(now) + credential.ttl_s(self.settings)
        token = self._codec.issue(TokenClaims(tokens.kind, device.id, device.token_epoch, now_ms, expires_s))
        return Session(token, int(expires_s - now))

    def keys_changed(self) -> None:
        """The signing keys changed (rotation, prune): tokens must be verified anew."""
        self._token_memo.clear()

    async def device_for_token(self, token: str, tokens: TokenScheme) -> Device:
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
        if claims.dialect != tokens.kind:
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
        if tokens.supersedes and device.token_ms is not None and claims.issued_ms < device.token_ms:
            # superseded: it lives 30 s from the moment the next token was issued
            if not superseded_token_alive(device.superseded_tokens, claims.issued_ms, now * 1000):
                raise TokenInvalid("token was superseded by a newer one")
        return device

    # --- reporting ---

    async def report(
        self, token: str, rules: ReportRules[Address, Route], address: Address, read_body: BodyReader
    ) -> list[Stored]:
        """Run one report: the stored messages (every part, in one transaction) with their verdicts."""
        device = await self.device_for_token(token, rules.tokens)
        runtime = await self.product(device)
        route = rules.route(device, runtime, address)
        await self.throttle_report(device, runtime)
        payload = await read_body()
        received_ms = self.now_ms()
        pairs: list[tuple[Device, StoredMessage]] = []
        stored: list[Stored] = []
        for part in rules.decode(route, payload):
            target, target_runtime = device, runtime
            if part.device_id is not None:
                target = await self._sub_device(device, part.device_id)
                target_runtime = await self.product(target)
            judged: Verdict[Any] | None = None
            reply: bytes | None = None
            values: tuple[ValuesAt, ...] = ()
            if part.validated:
                groups, refused = rules.judge(part, target_runtime.model, received_ms)
                judged = verdict(groups, refused, target_runtime.whole_report)
                if refused:
                    self.metrics.refused(rules.dialect, refused)
                reply = rules.reply(part, judged)
                values = judged.values
            message = self.message(
                target, rules.dialect, part.topic, part.kind, part.payload, received_ms, reply, values
            )
            pairs.append((target, message))
            stored.append((message, judged))
        await self.store_many(tuple(pairs))
        return stored

    async def _sub_device(self, gateway: Device, device_id: str) -> Device:
        """A gateway's enabled sub-device, by its IoTDA ``device_id``; NotAChild otherwise."""
        child = await self._cache.by_device_id(device_id)
        if child is None or child.gateway_id != gateway.id:
            raise NotAChild(f"device {device_id} is not a sub-device of this gateway")
        if not child.enabled:
            raise NotAChild(f"sub-device {device_id} is disabled")
        return child

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
        seen = dict(await self._directory.recently_seen(now_ms - int(longest * 1000)))
        ids = list(seen)
        for start in range(0, len(ids), RESUME_CHUNK):  # one load per device took 30 s at 100,000 (PostgreSQL)
            for device in await self._cache.load_many(ids[start:start + RESUME_CHUNK]):
                self.presence.resume(device, seen[device.id], await self._presence_timeout_ms(device))
                resumed += 1
        return resumed
