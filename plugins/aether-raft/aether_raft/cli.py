"""``aether cluster status|add|remove|transfer-leader``, through a node's admin API.

Any node's API takes the operations (a follower forwards them to the leader). A
failure is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
import httpx

#: A membership change waits for the new node to catch up (bounded on the leader).
OP_TIMEOUT = 120.0


def _api(f: Callable[..., None]) -> Callable[..., None]:
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)
    f = click.option("--token", envvar="AETHER_TOKEN", required=True,
                     help="A bearer token from /login ($AETHER_TOKEN; prefer the variable)."
                     )(f)
    f = click.option("--url", envvar="AETHER_URL", required=True,
                     help="A node's admin API, e.g. http://127.0.0.1:8080 ($AETHER_URL).")(f)
    return f


def _call(method: str, url: str, path: str, token: str, body: Any = None) -> dict[str, Any]:
    target = f"{url.rstrip('/')}{path}"
    try:
        response = httpx.request(method, target, json=body, timeout=OP_TIMEOUT,
                                 headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise click.ClickException(f"{url}: {type(exc).__name__}: {exc}") from None
    if response.status_code >= 300:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise click.ClickException(f"{target}: HTTP {response.status_code}: {detail}")
    result: dict[str, Any] = response.json()
    return result


def _members(body: dict[str, Any]) -> None:
    for kind in ("voters", "learners"):
        for name, address in sorted((body.get(kind) or {}).items()):
            click.echo(f"{kind[:-1]:<8} {name} {address or ''}".rstrip())


@click.group("cluster")
def cluster() -> None:
    """Inspect and change a raft cluster."""


@cluster.command("status")
@_api
def status(url: str, token: str, as_json: bool) -> None:
    """Show role, term, leader, commit/applied and peer connections of one node."""
    body = _call("GET", url, "/cluster", token)
    if as_json:
        click.echo(json.dumps(body, indent=2, sort_keys=True))
        return
    leader = body.get("leader") or {}
    click.echo(f"node     {body.get('node', '?')}  ({body.get('role', '?')}, "
               f"term {leader.get('term', '?')})")
    click.echo(f"leader   {leader.get('name') or 'none'}"
               + (f" at {leader['address']}" if leader.get("address") else ""))
    if "commit" in body:
        click.echo(f"log      commit {body['commit']}, applied {body['applied']}, "
                   f"snapshot at {body.get('snapshot_index', 0)}")
    if body.get("voters"):
        click.echo(f"voters   {', '.join(body['voters'])}")
    if body.get("learners"):
        click.echo(f"learners {', '.join(body['learners'])}")
    for name, peer in sorted((body.get("peers") or {}).items()):
        state = "connected" if peer.get("connected") else "not connected"
        click.echo(f"peer     {name} {peer.get('address')} ({state})")


@cluster.command("add")
@click.argument("node_id")
@click.argument("address")
@_api
def add(node_id: str, address: str, url: str, token: str, as_json: bool) -> None:
    """Add NODE_ID (peer address ADDRESS, host:port) to the cluster.

    It joins as a learner and becomes a voter once its log caught up. Start the new
    node with ``[transport] join = true`` and ``peers`` = the current members (before
    or after this command). If it did not catch up in time it stays a learner: run the
    same command again to promote it.
    """
    body = _call("POST", url, "/cluster/members", token, {"node": node_id, "address": address})
    if as_json:
        click.echo(json.dumps(body, indent=2, sort_keys=True))
        return
    click.echo(f"{node_id} at {address} is a {body.get('role', '?')}")
    if body.get("detail"):
        click.echo(body["detail"])
    _members(body)


@cluster.command("remove")
@click.argument("node_id")
@_api
def remove(node_id: str, url: str, token: str, as_json: bool) -> None:
    """Remove NODE_ID from the cluster (then stop its process)."""
    body = _call("DELETE", url, f"/cluster/members/{node_id}", token)
    if as_json:
        click.echo(json.dumps(body, indent=2, sort_keys=True))
        return
    click.echo(f"{node_id} removed")
    _members(body)


@cluster.command("transfer-leader")
@click.argument("node_id", required=False)
@_api
def transfer_leader(node_id: str | None, url: str, token: str, as_json: bool) -> None:
    """Hand leadership to NODE_ID (default: the most up-to-date other voter)."""
    body = _call("POST", url, "/cluster/leader", token, {"node": node_id} if node_id else {})
    if as_json:
        click.echo(json.dumps(body, indent=2, sort_keys=True))
        return
    click.echo(f"leader {body.get('leader')} (term {body.get('term')})")
