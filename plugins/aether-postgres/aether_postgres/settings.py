"""The ``[storage] use = "postgres"`` manifest section.

Passwords never sit in the manifest: give ``password = "${env:NAME}"`` or
``"${file:PATH}"`` (or let libpq read ``PGPASSWORD`` / ``~/.pgpass``); a password typed
inline, in ``password`` or in the DSN, is refused when the manifest is loaded. Both the DSN and
the password are :class:`~pydantic.SecretStr`, so neither shows up in a repr, a log line
or an error; :func:`describe_dsn` is the form that may be shown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Self

from psycopg.conninfo import conninfo_to_dict
from pydantic import (
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from aether_core.storage.base import StorageSettings

#: Lower-case identifiers only, so that the schema name needs no quoting rules of its own
#: and the notification channel derived from it stays within Postgres' 63-byte limit.
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")

#: A whole value that is one ``${env:…}`` / ``${file:…}`` reference.
_REFERENCE = re.compile(r"^\$\{(env|file):[^}]+\}$")

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


def parse_dsn(dsn: str) -> dict[str, str]:
    """libpq keywords of ``dsn``; the parser's own message may echo the DSN, so it is dropped."""
    try:
        return {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    except Exception:
        raise PydanticCustomError(
            "dsn", "not a PostgreSQL connection string (key=value pairs or a postgresql:// URI)"
        ) from None


def describe_dsn(dsn: str) -> str:
    """``user@host:port/dbname``: what a log line or error may say about a DSN."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "(unparsable dsn)"
    user = str(params.get("user", ""))
    host = str(params.get("host", "") or "localhost")
    port = str(params.get("port", "") or "5432")
    db = str(params.get("dbname", "") or user)
    return f"{user + '@' if user else ''}{host}:{port}/{db}"


def _as_written(info: ValidationInfo, key: str) -> object:
    """The manifest's text for ``key`` before interpolation (None when the settings were
    not loaded from a manifest, or the key is absent)."""
    raw = (info.context or {}).get("raw") if isinstance(info.context, dict) else None
    return raw.get(key) if isinstance(raw, dict) else None


class PostgresSettings(StorageSettings):
    """``[storage] use = "postgres"``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    #: libpq connection string or ``postgresql://`` URI (a password in it is accepted,
    #: e.g. from ``${env:DATABASE_URL}``, and never logged).
    dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    #: Password, from ``${env:…}`` or ``${file:…}``; overrides one in the DSN.
    password: SecretStr | None = None
    #: The Postgres schema holding this deployment's tables; several deployments share a
    #: database by using different schemas.
    schema_name: str = Field(default="aether", alias="schema")
    #: Connections kept open, and the most the pool opens.
    pool_min_size: int = Field(default=1, ge=0)
    pool_size: int = Field(default=10, ge=1)
    #: Seconds to establish a connection.
    connect_timeout: float = Field(default=5.0, gt=0)
    #: Seconds a caller waits for a free pooled connection before a 503.
    pool_timeout: float = Field(default=10.0, gt=0)
    #: Seconds any one statement (a whole commit included) may run before a 503.
    statement_timeout: float = Field(default=10.0, gt=0)
    #: TLS: libpq's sslmode and certificate files (None: libpq's default / the DSN's).
    sslmode: SslMode | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    #: Shown in pg_stat_activity; defaults to ``aether:<node name>``.
    application_name: str | None = None

    @field_validator("dsn")
    @classmethod
    def _dsn_parses(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        params = parse_dsn(value.get_secret_value())
        written = _as_written(info, "dsn")
        # A password typed into the manifest's DSN is refused; one that arrives through a
        # reference (dsn = "${env:DATABASE_URL}", or ":${env:PW}@" inside it) is fine.
        if params.get("password") and isinstance(written, str) and "${" not in written:
            raise PydanticCustomError(
                "inline_secret",
                "holds a password inline: remove it and set password = \"${env:NAME}\" "
                "(or \"${file:PATH}\"), or take the whole dsn from ${env:…}",
            )
        return value

    @field_validator("password")
    @classmethod
    def _password_is_a_reference(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        written = _as_written(info, "password")
        if written is not None and not (isinstance(written, str) and _REFERENCE.match(written)):
            raise PydanticCustomError(
                "inline_secret",
                "must be a reference, \"${env:NAME}\" or \"${file:PATH}\", never the "
                "password itself",
            )
        return value

    @field_validator("sslrootcert", "sslcert", "sslkey")
    @classmethod
    def _relative_to_the_manifest(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A relative certificate path means "next to the manifest", not "wherever the
        # node happened to be started from".
        base = info.context.get("manifest_path") if isinstance(info.context, dict) else None
        if value is None or base is None or Path(value).expanduser().is_absolute():
            return value
        return str(Path(base).parent / value)

    @field_validator("schema_name")
    @classmethod
    def _schema_is_an_identifier(cls, value: str) -> str:
        if not SCHEMA_NAME.match(value):
            raise PydanticCustomError(
                "schema",
                "{value} is not a schema name: use 1 to 48 lower-case letters, digits and "
                "'_', not starting with a digit",
                {"value": repr(value)},
            )
        return value

    @model_validator(mode="after")
    def _pool_bounds(self) -> Self:
        if self.pool_min_size > self.pool_size:
            raise PydanticCustomError(
                "pool",
                "pool_min_size ({low}) is larger than pool_size ({high})",
                {"low": self.pool_min_size, "high": self.pool_size},
            )
        return self
