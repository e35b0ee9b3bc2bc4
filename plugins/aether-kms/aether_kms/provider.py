"""AWS KMS as a key provider: ``GenerateDataKey`` for new secret versions, ``Encrypt``
to re-wrap, ``Decrypt`` to unwrap.

Key versions are aliases ``<alias>/<n>``; each points at its own symmetric KMS key and
the highest ``n`` is current. Rotation creates a key and the next alias; retiring a
version deletes its alias and disables its key (a KMS administrator may schedule the
deletion later). Unwrapping names the version's key and checks that KMS used exactly
that key, so a data key presented under another version is refused.

boto3 is synchronous: every call runs in a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from aether_core.errors import BadRequest, ConfigurationError
from aether_core.providers import NodeInfo
from aether_core.secrets.errors import (
    KeyProviderUnavailable,
    SecretIntegrityError,
    UnknownKeyVersion,
)
from aether_core.services import KeyProvider
from aether_kms.settings import KmsSettings

log = structlog.get_logger("aether.kms")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class KmsKeyProvider(KeyProvider):
    name: ClassVar[str] = "kms"
    Settings = KmsSettings

    def __init__(self, settings: KmsSettings) -> None:
        self.settings = settings
        self.alias = settings.alias
        self._client: Any = None
        #: version -> ARN of the key its alias points at.
        self._targets: dict[str, str] = {}
        self._arns: dict[str, str] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: KmsSettings, node: NodeInfo) -> KmsKeyProvider:
        return cls(settings)

    # -- plumbing ----------------------------------------------------------------------

    def _make_client(self) -> Any:
        s = self.settings
        return boto3.client(
            "kms", region_name=s.region_name, endpoint_url=s.endpoint_url,
            aws_access_key_id=s.access_key_id,
            aws_secret_access_key=(s.secret_access_key.get_secret_value()
                                   if s.secret_access_key else None),
            config=Config(connect_timeout=s.timeout, read_timeout=s.timeout,
                          retries={"max_attempts": 2, "mode": "standard"}),
        )

    async def _call(self, operation: str, **kwargs: Any) -> Any:
        if self._client is None:
            self._client = await asyncio.to_thread(self._make_client)
        try:
            return await asyncio.to_thread(getattr(self._client, operation), **kwargs)
        except BotoCoreError as exc:
            # The message names the endpoint, never a key or a plaintext.
            raise KeyProviderUnavailable(
                f"KMS {operation} failed: {type(exc).__name__}: {exc}") from None

    def alias_of(self, version: str) -> str:
        return f"{self.alias}/{version}"

    async def _refresh(self) -> None:
        targets: dict[str, str] = {}
        prefix = self.alias + "/"
        marker: str | None = None
        while True:
            page = await self._call("list_aliases", **({"Marker": marker} if marker else {}))
            for entry in page.get("Aliases", []):
                name = entry.get("AliasName", "")
                suffix = name[len(prefix):] if name.startswith(prefix) else ""
                if suffix.isdigit() and entry.get("TargetKeyId"):
                    targets[suffix] = str(entry["TargetKeyId"])
            if not page.get("Truncated"):
                break
            marker = page["NextMarker"]
        self._targets = targets

    def _current(self) -> str:
        if not self._targets:
            raise ConfigurationError(
                f"[secrets] alias: no KMS key version {self.alias_of('1')} exists in "
                f"{self.settings.region_name}; create a key and that alias, or set "
                "create_missing = true"
            )
        return max(self._targets, key=int)

    async def _arn(self, key_id: str) -> str:
        if key_id.startswith("arn:"):
            return key_id
        arn = self._arns.get(key_id)
        if arn is None:
            described = await self._call("describe_key", KeyId=key_id)
            arn = self._arns[key_id] = str(described["KeyMetadata"]["Arn"])
        return arn

    # -- KeyProvider -------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._refresh()
        except KeyProviderUnavailable as exc:
            raise ConfigurationError(f"[secrets] key_provider = \"kms\": {exc.detail}") from None
        except ClientError as exc:
            raise ConfigurationError(
                f"[secrets] key_provider = \"kms\": KMS refused list_aliases "
                f"({_code(exc)})") from None
        if not self._targets and self.settings.create_missing:
            await self.create_version()
        version = self._current()
        log.info("KMS key provider ready", alias=self.alias_of(version),
                 versions=len(self._targets))

    async def close(self) -> None:
        self._client = None

    async def versions(self) -> list[str]:
        if not self._targets:
            await self._refresh()
        return sorted(self._targets, key=int)

    async def current_version(self) -> str:
        if not self._targets:
            await self._refresh()
        return self._current()

    async def generate_data_key(self, size: int = 32) -> tuple[bytes, str, bytes]:
        version = await self.current_version()
        try:
            out = await self._call("generate_data_key", KeyId=self.alias_of(version),
                                   NumberOfBytes=size)
        except ClientError as exc:
            raise self._refusal("GenerateDataKey", version, exc) from None
        return bytes(out["Plaintext"]), version, bytes(out["CiphertextBlob"])

    async def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        version = await self.current_version()
        try:
            out = await self._call("encrypt", KeyId=self.alias_of(version), Plaintext=data_key)
        except ClientError as exc:
            raise self._refusal("Encrypt", version, exc) from None
        return version, bytes(out["CiphertextBlob"])

    async def unwrap(self, key_version: str, wrapped_key: bytes) -> bytes:
        if key_version not in self._targets:
            await self._refresh()
        target = self._targets.get(key_version)
        if target is None:
            raise UnknownKeyVersion(
                f"KMS key version {self.alias_of(key_version)} does not exist (retired, or "
                "the record belongs to another deployment)")
        try:
            # The blob names its key; KMS implementations differ in how they refuse a
            # KeyId that does not match it, so the check is made here, the same everywhere.
            out = await self._call("decrypt", CiphertextBlob=wrapped_key)
        except ClientError as exc:
            raise self._refusal("Decrypt", key_version, exc) from None
        if str(out.get("KeyId", "")) != await self._arn(target):
            raise SecretIntegrityError(
                f"a data key presented as KMS key version {self.alias_of(key_version)} was "
                "wrapped by another key; refused")
        return bytes(out["Plaintext"])

    def _refusal(self, operation: str, version: str, exc: ClientError) -> Exception:
        code = _code(exc)
        where = self.alias_of(version)
        if code in ("InvalidCiphertextException", "IncorrectKeyException"):
            return SecretIntegrityError(
                f"KMS {operation} under {where} refused the wrapped data key ({code}): "
                "tampered with, or wrapped by another key")
        if code in ("NotFoundException", "DisabledException", "KMSInvalidStateException"):
            return UnknownKeyVersion(f"KMS key version {where} is not usable ({code})")
        return KeyProviderUnavailable(f"KMS {operation} under {where} failed ({code})")

    async def create_version(self) -> str:
        async with self._lock:
            await self._refresh()
            version = str(max((int(v) for v in self._targets), default=0) + 1)
            created = await self._call(
                "create_key", Description=f"Aether key-encryption key {self.alias_of(version)}",
                KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT",
                Tags=[{"TagKey": "aether-alias", "TagValue": self.alias}])
            key_id = str(created["KeyMetadata"]["KeyId"])
            try:
                await self._call("create_alias", AliasName=self.alias_of(version),
                                 TargetKeyId=key_id)
            except ClientError as exc:
                if _code(exc) != "AlreadyExistsException":
                    raise self._refusal("CreateAlias", version, exc) from None
                # Another node made this version first: use theirs, drop ours.
                await self._call("schedule_key_deletion", KeyId=key_id, PendingWindowInDays=7)
            await self._refresh()
            log.info("created a KMS key version", alias=self.alias_of(version))
            return self._current()

    async def retire(self, key_version: str) -> None:
        async with self._lock:
            await self._refresh()
            target = self._targets.get(key_version)
            if target is None:
                return
            if key_version == self._current():
                raise BadRequest(f"KMS key version {self.alias_of(key_version)} is current; "
                                 "it cannot retire")
            await self._call("delete_alias", AliasName=self.alias_of(key_version))
            await self._call("disable_key", KeyId=target)
            self._targets.pop(key_version, None)
            log.info("retired a KMS key version", alias=self.alias_of(key_version))
