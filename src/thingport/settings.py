"""One typed settings object: defaults < TOML file < env ``THINGPORT_*`` < command-line flags.

The TOML file is ``$THINGPORT_CONFIG`` or ``thingport.toml`` in the data dir, when it exists. The embedded
default needs none of it.
"""

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from thingport.store.database import Durability
from thingport.urls import redact

DEFAULT_DATA_DIR = Path("thingport-data")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THINGPORT_", extra="ignore")

    data_dir: Path = DEFAULT_DATA_DIR
    host: str = "0.0.0.0"
    port: int = Field(8443, ge=0, le=65535)

    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=0, le=65535)

    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ecdsa: bool = Field(
        False, description="serve an ECDSA P-256 certificate beside the RSA one: cheaper handshakes for clients"
        " that offer ECDSA; devices must then trust it too (README: certificates)"
    )
    tls_ecdsa_cert: Path | None = None
    tls_ecdsa_key: Path | None = None
    tls_profile: Literal["modern", "compat"] = "modern"
    tls_offload: bool = Field(
        False, description="serve plain HTTP: a TLS-terminating proxy in front speaks to devices"
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1", description="proxies whose X-Forwarded-For names the device's address"
    )

    aliyun_token_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    aliyun_timestamp_window_s: int = Field(15 * 60, ge=1)
    aliyun_max_body_bytes: int = Field(128 * 1024, ge=1)
    huawei_token_ttl_s: int = Field(24 * 3600, ge=60)
    huawei_max_body_bytes: int = Field(1024 * 1024, ge=1)
    huawei_require_sign_type_1: bool = Field(
        False,
        description="IoTDA auth must be sign_type 1 (time-checked): sign_type 0 is refused"
        " (products may say otherwise)",
    )
    auth_max_body_bytes: int = Field(4 * 1024, ge=256)

    device_report_rate: float = Field(100.0, gt=0, description="reports per second per device")
    device_report_burst: float = Field(200.0, ge=1)
    product_report_rate: float | None = Field(None, gt=0, description="reports per second per product")
    product_report_burst: float = Field(1000.0, ge=1)
    source_auth_rate: float = Field(5.0, gt=0, description="auth attempts per second per source address")
    source_auth_burst: float = Field(100.0, ge=1)
    instance_report_rate: float | None = Field(None, gt=0, description="reports per second for the whole instance")
    instance_report_burst: float = Field(1000.0, ge=1)
    device_auth_rate: float = Field(1.0, gt=0, description="auth attempts per second per device")
    device_auth_burst: float = Field(20.0, ge=1)

    presence_timeout_s: float = Field(300.0, gt=0, description="a device silent this long is offline")
    retention_days: float | None = Field(None, gt=0, description="delete messages older than this")
    retention_max_mb: float | None = Field(None, gt=0, description="delete the oldest messages past this size")
    retention_force: bool = Field(False, description="also delete what a subscription has not confirmed")
    retention_every_s: float = Field(60.0, gt=0, description="how often retention runs (the first run after this)")
    storage_max_mb: float | None = Field(None, gt=0, description="cap on the database file; writes past it are refused")
    group_commit_max_batch: int = Field(1000, ge=1)
    durability: Durability = Field(
        "fsync", description="fsync: a report is acknowledged once on disk (survives power loss); os: once written"
        " to the operating system (survives a crash of thingport, not of the machine; cheaper)"
    )
    registry_poll_s: float = Field(0.2, gt=0, description="how often the server looks for registry changes")
    shutdown_grace_s: int = Field(3, ge=1, description="how long a stopping server lets open connections finish")
    keep_alive_s: int = Field(30, ge=1, description="idle keep-alive connections are closed after this")
    header_timeout_s: float = Field(
        10.0, gt=0, description="a request's head must arrive within this (slow clients are cut off)"
    )
    body_timeout_s: float = Field(60.0, gt=0, description="a request's body must arrive within this after its head")
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="request line and headers larger than this get 431")
    api_max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="management API bodies larger than this get 413"
    )
    api_import_max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="a device import's body (admin keys) larger than this gets 413"
    )
    worker_id: int = Field(0, ge=0, le=1023)
    database_url: str | None = Field(
        None, description="postgresql://... for production mode; unset: SQLite in the data dir"
    )
    redis_url: str | None = Field(None, description="redis://... shares rate limits and presence across instances")
    workers: int = Field(1, ge=1, le=64, description="worker processes on this host")
    db_upgrade: bool = Field(False, description="run the schema migrations at start")
    log_level: str = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        data_dir = getattr(init_settings, "init_kwargs", {}).get("data_dir")
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, _toml_file(data_dir))

    @field_validator("database_url")
    @classmethod
    def _postgresql_only(cls, url: str | None) -> str | None:
        """Only PostgreSQL (or the embedded SQLite, with no URL): another scheme would fail later, deep in a
        driver, with a message about a missing module."""
        if url and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"must be a postgresql:// URL (or unset, for SQLite in the data dir), got "
                             f"{redact(url)!r}")
        return url

    @model_validator(mode="after")
    def _sizes_are_sqlite_only(self) -> "Settings":
        """PostgreSQL does not give space back when rows go (its database size only grows until VACUUM FULL),
        so a size bound there would delete far more than it should: refuse it rather than honour it wrongly."""
        if self.database_url and (self.retention_max_mb is not None or self.storage_max_mb is not None):
            raise ValueError("RETENTION_MAX_MB and STORAGE_MAX_MB bound the embedded SQLite store only: on "
                             "PostgreSQL use RETENTION_DAYS and the database's own quotas")
        return self

    @property
    def storage_max_bytes(self) -> int | None:
        return None if self.storage_max_mb is None else int(self.storage_max_mb * 1024 * 1024)


def _toml_file(data_dir: Path | str | None = None) -> Path | None:
    """``$THINGPORT_CONFIG``, or ``thingport.toml`` in the data dir (``--data-dir``, else the env's, else the
    default), so every command given a data dir also finds its settings (a database URL, say)."""
    explicit = os.environ.get("THINGPORT_CONFIG")
    if explicit:
        return Path(explicit)
    directory = Path(data_dir) if data_dir else Path(os.environ.get("THINGPORT_DATA_DIR", DEFAULT_DATA_DIR))
    candidate = directory / "thingport.toml"
    return candidate if candidate.exists() else None


def load_settings(**overrides: Any) -> Settings:
    """Settings with command-line ``overrides`` (None values mean "not given") on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
