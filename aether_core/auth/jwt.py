"""``jwt``: the kernel's built-in auth — users in Aether's store, JWT bearer tokens, roles.

Tokens carry ``sub`` (the user), ``uid`` (which incarnation of the user), ``iss``,
``aud``, ``iat``, ``nbf``, ``exp`` and ``jti``, and name their key in the header's
``kid``. The algorithm is pinned by configuration: a token naming any other (``none``,
or HS256 "signed" with a public key) is refused. A verified token is cached until it
expires, so each request costs a dictionary look-up; revocation and the user's current
roles are checked on every use.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jwt
import msgspec
import structlog
from pydantic import Field, SecretStr

from aether_core.auth.base import Auth, Decision, Principal
from aether_core.auth.keys import ALGORITHMS, KeySet, key_file
from aether_core.auth.roles import Role, RoleTable
from aether_core.auth.signing import (
    DEFAULT_PROPAGATION,
    SigningKeyInfo,
    SigningKeys,
    SigningStatus,
)
from aether_core.auth.users import (
    MAX_PASSWORD,
    Passwords,
    User,
    UserDirectory,
    check_password,
    check_username,
)
from aether_core.errors import (
    AlreadyExists,
    BadRequest,
    ConfigurationError,
    NotFound,
    Unauthorized,
    Unavailable,
)
from aether_core.providers import NodeInfo, ProviderSettings
from aether_core.statemachine import USER

if TYPE_CHECKING:
    from aether_core.manager import ConfigManager
    from aether_core.secrets.manager import SecretManager

log = structlog.get_logger("aether.auth")

#: Where the bootstrap admin's password comes from on first start.
ADMIN_PASSWORD_ENV = "AETHER_ADMIN_PASSWORD"
KEY_FILE = "jwt-signing.key"
_CACHE_LIMIT = 65_536


class JwtSettings(ProviderSettings):
    """``[auth] use = "jwt"``."""

    #: How tokens are signed: HMAC (HS*) with a shared secret, or a key pair.
    algorithm: Literal["HS256", "HS384", "HS512", "EdDSA", "RS256", "ES256"] = "HS256"
    #: HS*: the shared secret (≥ 32 bytes); EdDSA/RS256/ES256: a PEM private key. Use
    #: ``${env:…}`` or ``${file:…}``. Unset: an HS256 key generated into
    #: ``<data_dir>/jwt-signing.key`` (mode 0600) on first start.
    signing_key: SecretStr | None = None
    #: The ``kid`` header of issued tokens; names the signing key among ``verify_keys``.
    key_id: str = Field(default="k1", min_length=1, max_length=64)
    #: Older keys that still verify, by kid (HS*: secrets; others: PEM public keys).
    verify_keys: dict[str, SecretStr] = Field(default_factory=dict)
    #: The ``iss`` and ``aud`` claims issued and required.
    issuer: str = "aether"
    audience: str = "aether"
    token_ttl: int = Field(default=900, ge=30, le=86_400, description="seconds")
    leeway: float = Field(default=5.0, ge=0, le=30, description="seconds of clock skew")
    #: Extra roles, or replacements of the built-ins (admin, editor, viewer).
    roles: dict[str, Role] = Field(default_factory=dict)
    #: The user created on first start when the store has none.
    bootstrap_admin: str = "admin"


class UnknownKeyId(Unauthorized):
    """A token names a key id this node does not know (yet: it may lag a rotation)."""


class _Verified(msgspec.Struct, frozen=True):
    sub: str
    uid: str
    jti: str
    exp: float


class JwtAuth(Auth):
    name = "jwt"
    Settings = JwtSettings

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str = "aether",
        audience: str = "aether",
        token_ttl: int = 900,
        leeway: float = 5.0,
        roles: RoleTable | None = None,
        bootstrap_admin: str = "admin",
        passwords: Passwords | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if keys.algorithm not in ALGORITHMS:
            raise ConfigurationError(f"[auth] algorithm {keys.algorithm!r} is not supported")
        #: The configured keys; :attr:`keys` are those in force (stored ones after a
        #: signing-key rotation, see :mod:`aether_core.auth.signing`).
        self.base = keys
        self.keys = keys
        self.signing: SigningKeys | None = None
        self.issuer = issuer
        self.audience = audience
        self.token_ttl = token_ttl
        self.leeway = leeway
        self.roles = roles or RoleTable()
        self.bootstrap_admin = bootstrap_admin
        self.passwords = passwords or Passwords()
        self.clock = clock
        self.directory: UserDirectory | None = None
        self._cache: dict[str, _Verified] = {}

    @classmethod
    def from_settings(cls, settings: JwtSettings, node: NodeInfo) -> JwtAuth:
        if settings.signing_key is not None:
            material = settings.signing_key.get_secret_value()
        elif settings.algorithm.startswith("HS"):
            material = key_file(Path(node.data_dir) / KEY_FILE)
        else:
            raise ConfigurationError(
                f"[auth] signing_key: required for algorithm {settings.algorithm} "
                "(a PEM private key, e.g. \"${file:jwt-ed25519.pem}\")"
            )
        keys = KeySet.build(
            settings.algorithm, settings.key_id, material,
            {kid: v.get_secret_value() for kid, v in settings.verify_keys.items()},
        )
        return cls(
            keys, issuer=settings.issuer, audience=settings.audience,
            token_ttl=settings.token_ttl, leeway=settings.leeway,
            roles=RoleTable(settings.roles), bootstrap_admin=settings.bootstrap_admin,
        )

    # -- life cycle ------------------------------------------------------------------

    async def attach(self, manager: ConfigManager, *, bootstrap: bool = True,
                     secrets: SecretManager | None = None) -> None:
        """Load users from ``manager``'s store and follow their changes; on a store with
        no user yet, create the bootstrap admin (password from ``$AETHER_ADMIN_PASSWORD``,
        else generated and printed once to stderr). With ``secrets``, signing keys
        rotated into the store are loaded and followed too. Idempotent."""
        if self.directory is not None:
            return
        directory = UserDirectory(manager)
        await directory.load()
        self.directory = directory
        if secrets is not None:
            self.signing = SigningKeys(secrets, self.base,
                                       overlap=self.token_ttl + 2 * self.leeway,
                                       on_change=self._use_keys)
            await self.signing.start()
        if bootstrap and not directory.users:
            await self._bootstrap()

    async def _bootstrap(self) -> None:
        password = os.environ.get(ADMIN_PASSWORD_ENV)
        generated = not password
        if not password:
            password = secrets.token_urlsafe(18)
        try:
            await self.add_user(self.bootstrap_admin, password, ["admin"], author="bootstrap")
        except AlreadyExists:
            return  # another node of the cluster made it first
        log.info("created the bootstrap admin user", user=self.bootstrap_admin,
                 password_from="generated" if generated else ADMIN_PASSWORD_ENV)
        if generated:
            # Deliberately not a log line: shown once, on the operator's terminal.
            sys.stderr.write(
                f"\naether: created user {self.bootstrap_admin!r} with password {password}\n"
                f"aether: it is shown only this once; set {ADMIN_PASSWORD_ENV} before the "
                "first start to choose it\n\n"
            )
            sys.stderr.flush()

    def _use_keys(self, keys: KeySet) -> None:
        self.keys = keys

    async def close(self) -> None:
        if self.signing is not None:
            await self.signing.close()
            self.signing = None
            self.keys = self.base
        if self.directory is not None:
            await self.directory.close()
            self.directory = None
        self._cache.clear()

    def _dir(self) -> UserDirectory:
        if self.directory is None:
            raise Unavailable("authentication is not ready yet (users are loading)")
        return self.directory

    # -- the Auth contract -----------------------------------------------------------

    async def authenticate(self, username: str, password: str) -> Principal:
        directory = self._dir()
        refusal = Unauthorized("invalid username or password")
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            raise refusal
        user = directory.get(username) if isinstance(username, str) else None
        ok = await self.passwords.verify(user.password_hash if user else None, password)
        if user is None or not ok:
            raise refusal
        return Principal(name=user.name, roles=user.roles)

    async def issue_token(self, principal: Principal) -> str:
        user = self._dir().get(principal.name)
        if user is None:
            raise Unauthorized(f"user {principal.name!r} does not exist")
        now = int(self.clock())
        claims = {
            "sub": user.name,
            "uid": user.uid,
            "roles": list(user.roles),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.token_ttl,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(
            claims, self.keys.signing_key, algorithm=self.keys.algorithm,
            headers={"kid": self.keys.signing_kid},
        )

    def _decode(self, token: str) -> _Verified:
        cached = self._cache.get(token)
        if cached is not None:
            if self.clock() <= cached.exp + self.leeway:
                return cached
            del self._cache[token]
            raise Unauthorized("token has expired")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("token is malformed") from None
        if header.get("alg") != self.keys.algorithm:
            raise Unauthorized(f"token algorithm must be {self.keys.algorithm}")
        kid = header.get("kid")
        key = self.keys.verify_keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise UnknownKeyId("token is signed with an unknown key id")
        retires = self.keys.retire_at.get(kid)  # type: ignore[arg-type]
        if retires is not None and self.clock() > retires:
            raise Unauthorized("token is signed with a retired key")
        try:
            claims = jwt.decode(
                token, key, algorithms=[self.keys.algorithm], audience=self.audience,
                issuer=self.issuer, leeway=self.leeway,
                options={"require": ["exp", "iat", "nbf", "iss", "aud", "jti", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("token signature does not verify") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("token is invalid") from None
        verified = _Verified(
            sub=str(claims["sub"]), uid=str(claims.get("uid", "")), jti=str(claims["jti"]),
            exp=float(claims["exp"]),
        )
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = verified
        return verified

    async def verify_token(self, token: str) -> Principal:
        try:
            return self.verify_token_now(token)
        except UnknownKeyId:
            # Perhaps a key another node has just introduced: look once more.
            if self.signing is None or not await self.signing.reload_for_unknown_kid():
                raise
            return self.verify_token_now(token)

    def verify_token_now(self, token: str) -> Principal:
        """:meth:`verify_token` without a coroutine (the admin API's hot path)."""
        directory = self._dir()
        verified = self._decode(token)
        if directory.is_revoked(verified.jti):
            raise Unauthorized("token has been revoked")
        user = directory.get(verified.sub)
        if user is None or user.uid != verified.uid:
            raise Unauthorized("the token's user no longer exists")
        return Principal(name=user.name, roles=user.roles, token_id=verified.jti)

    def token_expiry(self, token: str) -> float:
        return self._decode(token).exp

    async def revoke_token(self, token: str) -> None:
        verified = self._decode(token)
        await self._dir().revoke(verified.jti, verified.exp + self.leeway, author=verified.sub)
        self._cache.pop(token, None)

    def authorize(self, principal: Principal, action: str, resource: str = "") -> Decision:
        return self.roles.decide(principal.roles, action, resource)

    def jwks(self) -> dict[str, Any]:
        return self.keys.jwks(self.clock())

    # -- signing keys ----------------------------------------------------------------

    def _signing(self) -> SigningKeys:
        if self.signing is None:
            raise ConfigurationError(
                "signing-key rotation keeps the keys encrypted in the store: the node needs "
                "a [secrets] key provider (the embedded default has one)")
        return self.signing

    async def rotate_signing_key(self, *, propagation: float = DEFAULT_PROPAGATION,
                                 author: str = "") -> SigningStatus:
        """Introduce a new signing key on every node, sign with it after
        ``propagation`` seconds; the old one verifies until its tokens expire."""
        return await self._signing().rotate(propagation=propagation, author=author)

    async def signing_status(self) -> SigningStatus:
        if self.signing is None:
            infos = [SigningKeyInfo(kid=kid, state="current" if kid == self.keys.signing_kid
                                    else "configured") for kid in sorted(self.keys.verify_keys)]
            return SigningStatus(algorithm=self.keys.algorithm,
                                 signing_kid=self.keys.signing_kid, keys=infos, stored=False)
        return await self.signing.status()

    # -- user administration ---------------------------------------------------------

    def _check_roles(self, roles: list[str]) -> None:
        unknown = [r for r in roles if r not in self.roles]
        if unknown:
            raise BadRequest(
                f"unknown role(s) {', '.join(map(repr, unknown))}; known: "
                f"{', '.join(self.roles.names())}"
            )

    def list_users(self) -> list[User]:
        return self._dir().all()

    def get_user(self, name: str) -> User:
        user = self._dir().get(name)
        if user is None:
            raise NotFound(f"user {name!r} does not exist")
        return user

    async def add_user(self, name: str, password: str, roles: list[str], *, author: str) -> User:
        check_username(name)
        check_password(password)
        self._check_roles(roles)
        directory = self._dir()
        # A deleted user's name can be taken again: expect its tombstone's version, so
        # two concurrent creations of one name cannot both succeed.
        head = await directory.manager.storage.get(USER, name)
        if head is not None and not head.deleted:
            raise AlreadyExists(f"user {name!r} already exists")
        password_hash = await self.passwords.hash(password)
        return await directory.put(
            name, password_hash=password_hash, roles=list(roles),
            expected_version=head.version if head else 0, author=author,
        )

    async def set_password(self, name: str, password: str, *, author: str) -> User:
        check_password(password)
        user = self.get_user(name)
        password_hash = await self.passwords.hash(password)
        return await self._dir().put(
            name, password_hash=password_hash, roles=None, expected_version=user.version,
            author=author,
        )

    async def set_roles(self, name: str, roles: list[str], *, author: str) -> User:
        self._check_roles(roles)
        user = self.get_user(name)
        return await self._dir().put(
            name, password_hash=None, roles=list(roles), expected_version=user.version,
            author=author,
        )

    async def delete_user(self, name: str, *, author: str) -> None:
        self.get_user(name)
        await self._dir().delete(name, author=author)
        for token, verified in list(self._cache.items()):
            if verified.sub == name:
                with contextlib.suppress(KeyError):
                    del self._cache[token]
