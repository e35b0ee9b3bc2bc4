"""The auth contract of :class:`aether_core.auth.base.Auth`, for this plugin's provider."""

from __future__ import annotations

import pytest
from aether_core.errors import Unauthorized
from argon2 import PasswordHasher

from {{ cookiecutter.package }}.provider import {{ cookiecutter.class_name }}, User


@pytest.fixture
def auth() -> {{ cookiecutter.class_name }}:
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return {{ cookiecutter.class_name }}({
        "ann": User(password_hash=hasher.hash("correct horse"), roles=["admin"]),
        "bob": User(password_hash=hasher.hash("battery staple"), roles=["reader"]),
    })


async def test_a_password_gives_a_principal_and_a_wrong_one_a_clean_refusal(
    auth: {{ cookiecutter.class_name }},
) -> None:
    principal = await auth.authenticate("ann", "correct horse")
    assert (principal.name, principal.roles) == ("ann", ("admin",))
    for user, password in (("ann", "not-her-password"), ("nobody", "correct horse")):
        with pytest.raises(Unauthorized) as info:
            await auth.authenticate(user, password)
        assert password not in str(info.value)


async def test_a_token_verifies_until_it_is_revoked(auth: {{ cookiecutter.class_name }}) -> None:
    principal = await auth.authenticate("bob", "battery staple")
    token = await auth.issue_token(principal)
    assert await auth.verify_token(token) == principal
    await auth.revoke_token(token)
    with pytest.raises(Unauthorized):
        await auth.verify_token(token)


async def test_authorize_decides_with_a_reason(auth: {{ cookiecutter.class_name }}) -> None:
    bob = await auth.authenticate("bob", "battery staple")
    assert auth.authorize(bob, "configs:read", "billing/db").allowed
    refused = auth.authorize(bob, "configs:write", "billing/db")
    assert not refused.allowed and refused.reason
