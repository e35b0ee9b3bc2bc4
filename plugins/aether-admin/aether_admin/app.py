"""``create_app``: the admin API as a Litestar (ASGI) app over a ConfigManager."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from aether_admin.context import STATE_KEY, AdminContext
from aether_admin.controllers.acks import AckController
from aether_admin.controllers.auth import AuthController
from aether_admin.controllers.cluster import ClusterController
from aether_admin.controllers.configs import ConfigController
from aether_admin.controllers.health import HealthController
from aether_admin.controllers.rollouts import RolloutController
from aether_admin.controllers.schemas import SchemaController
from aether_admin.controllers.secrets import KeyController, SecretController
from aether_admin.controllers.state import StateController
from aether_admin.controllers.users import RoleController, UserController
from aether_admin.controllers.watch import WatchController
from aether_admin.edge import Edge
from aether_admin.metrics import Metrics
from aether_admin.problems import ERROR_RESPONSES, EXCEPTION_HANDLERS
from aether_admin.security import PUBLIC, BearerAuth
from aether_admin.settings import AdminSettings
from aether_admin.throttle import Throttle
from aether_core.auth.base import Auth
from aether_core.auth.jwt import JwtAuth
from aether_core.auth.keys import KeySet
from aether_core.manager import ConfigManager
from aether_core.secrets.manager import SecretManager
from aether_core.transport.base import Transport

CONTROLLERS = (
    AuthController, ConfigController, SchemaController, UserController, RoleController,
    WatchController, HealthController, SecretController, KeyController,
    AckController, ClusterController, RolloutController, StateController,
)


def _document_problems() -> None:
    """Document every error response as problem+json (Litestar's default describes its
    own error shape, which this API never sends)."""
    for controller in CONTROLLERS:
        for handler in vars(controller).values():
            if isinstance(handler, HTTPRouteHandler):
                handler.responses = {**ERROR_RESPONSES, **(handler.responses or {})}


def create_app(
    manager: ConfigManager,
    transport: Transport | None = None,
    auth: Auth | None = None,
    *,
    settings: AdminSettings | None = None,
    metrics: Metrics | None = None,
    close_manager: bool = False,
    secrets: SecretManager | None = None,
) -> Litestar:
    """The admin API for ``manager``, ready to mount in any ASGI server.

    :param transport: for ``/ready`` (leader, readiness); default ``manager.transport``.
    :param auth: who may do what. Default: the built-in ``jwt`` auth with a random
        in-memory key (tokens end with the process) and users in ``manager``'s store;
        the first start creates ``admin`` from ``$AETHER_ADMIN_PASSWORD``.
    :param settings: body limit, login throttling, docs (see :class:`AdminSettings`).
    :param close_manager: close ``manager`` when the ASGI server shuts down.
    :param secrets: serve ``/secrets`` and ``/keys`` (404 there without one).

    The app starts ``manager`` and loads the users on ASGI start-up if nobody did yet.
    """
    settings = settings or AdminSettings()
    owned_auth = auth is None
    auth = auth if auth is not None else JwtAuth(KeySet.generate_hmac())
    ctx = AdminContext(
        manager=manager,
        secrets=secrets,
        transport=transport or manager.transport,
        auth=auth,
        settings=settings,
        metrics=metrics or Metrics(),
        user_throttle=Throttle(settings.login_failures_per_user, settings.login_window),
        address_throttle=Throttle(settings.login_failures_per_address, settings.login_window),
    )

    async def startup() -> None:
        await manager.start()
        if isinstance(ctx.auth, JwtAuth):
            await ctx.auth.attach(manager, secrets=ctx.secrets)

    async def shutdown() -> None:
        ctx.closing.set()
        if owned_auth and isinstance(ctx.auth, JwtAuth):
            await ctx.auth.close()
        if close_manager:
            if isinstance(ctx.auth, JwtAuth):
                await ctx.auth.close()
            await manager.close()

    openapi = OpenAPIConfig(
        title="Aether admin API",
        version="0.1.0",
        description="Versioned, typed configuration. Errors are RFC 9457 problem+json.",
        path="/docs",
        render_plugins=[ScalarRenderPlugin()],
        components=Components(security_schemes={
            "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
        }),
        security=[{"bearer": []}],
    ) if settings.docs else None
    _document_problems()
    app = Litestar(
        route_handlers=list(CONTROLLERS),
        middleware=[DefineMiddleware(BearerAuth, exclude=PUBLIC)],
        exception_handlers=EXCEPTION_HANDLERS,
        on_startup=[startup],
        on_shutdown=[shutdown],
        state=State({STATE_KEY: ctx}),
        openapi_config=openapi,
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,
    )
    app.asgi_handler = Edge(app.asgi_handler, ctx.metrics)
    return app


def admin_context(app: Litestar) -> AdminContext:
    found: Any = app.state[STATE_KEY]
    assert isinstance(found, AdminContext)
    return found
