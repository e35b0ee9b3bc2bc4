"""``aether rollout start|widen|promote|abort|health|status``: staged config rollout over
the admin API (``/rollouts``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aether_client.cli import _dump, _read_value, client_command, server_options

if TYPE_CHECKING:
    from aether_client.client import AsyncAetherClient

FRACTION = click.FloatRange(min=0, max=1, min_open=True)


def _summary(body: dict[str, Any]) -> str:
    return (f"{body['name']}: rollout {body['id']} {body['state']}, candidate version "
            f"{body['candidate_version']} to {body['fraction']:.2%} of clients "
            f"({body['acks']} acks, {body['nacks']} nacks)"
            + (f": {body['reason']}" if body.get("reason") else ""))


async def _post(client: AsyncAetherClient, path: str, body: dict[str, Any]) -> None:
    click.echo(_summary((await client.request("POST", path, json=body)).json()))


@click.group("rollout")
def rollout() -> None:
    """Roll a new config version out to a fraction of clients first."""


@rollout.command("start")
@server_options
@click.argument("name")
@click.argument("value", required=False)
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the JSON value from this file.")
@click.option("--fraction", type=FRACTION, required=True, help="Share of clients, (0, 1].")
@click.option("--comment", default="")
@client_command
async def start_command(client: AsyncAetherClient, name: str, value: str | None,
                        file: Path | None, fraction: float, comment: str) -> None:
    """Offer VALUE (JSON) as the next version of NAME to a fraction of clients."""
    await _post(client, "/rollouts", {"name": name, "value": _read_value(value, file),
                                      "fraction": fraction, "comment": comment})


@rollout.command("widen")
@server_options
@click.argument("name")
@click.option("--fraction", type=FRACTION, required=True)
@client_command
async def widen_command(client: AsyncAetherClient, name: str, fraction: float) -> None:
    """Raise the fraction of the running rollout of NAME."""
    await _post(client, "/rollouts/widen", {"name": name, "fraction": fraction})


@rollout.command("promote")
@server_options
@click.argument("name")
@client_command
async def promote_command(client: AsyncAetherClient, name: str) -> None:
    """Make the candidate of NAME everyone's version."""
    await _post(client, "/rollouts/promote", {"name": name})


@rollout.command("abort")
@server_options
@click.argument("name")
@click.option("--reason", default="")
@client_command
async def abort_command(client: AsyncAetherClient, name: str, reason: str) -> None:
    """Roll the running rollout of NAME back."""
    await _post(client, "/rollouts/abort", {"name": name, "reason": reason})


@rollout.command("health")
@server_options
@click.argument("name")
@click.option("--failed", is_flag=True, help="Report a failure: rolls the rollout back.")
@click.option("--detail", default="")
@client_command
async def health_command(client: AsyncAetherClient, name: str, failed: bool,
                         detail: str) -> None:
    """Report the health of the running rollout of NAME."""
    await _post(client, "/rollouts/health",
                {"name": name, "healthy": not failed, "detail": detail})


@rollout.command("status")
@server_options
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@client_command
async def status_command(client: AsyncAetherClient, name: str, as_json: bool) -> None:
    """The rollout of NAME: state, candidate, fraction, acks and nacks."""
    body = (await client.request("GET", "/rollouts", params={"name": name})).json()
    click.echo(_dump(body) if as_json else _summary(body))
