"""``aether cluster status``: a node's view of the cluster, through its admin API."""

from __future__ import annotations

import json

import click
import httpx


@click.group("cluster")
def cluster() -> None:
    """Inspect a raft cluster."""


@cluster.command("status")
@click.option("--url", envvar="AETHER_URL", required=True,
              help="The node's admin API, e.g. http://127.0.0.1:8080 ($AETHER_URL).")
@click.option("--token", envvar="AETHER_TOKEN", required=True,
              help="A bearer token from /login ($AETHER_TOKEN; prefer the variable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def status(url: str, token: str, as_json: bool) -> None:
    """Show role, term, leader, commit/applied and peer connections of one node."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/cluster", timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise click.ClickException(f"{url}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise click.ClickException(f"{url}/cluster: HTTP {response.status_code}: {detail}")
    body = response.json()
    if as_json:
        click.echo(json.dumps(body, indent=2, sort_keys=True))
        return
    leader = body.get("leader") or {}
    click.echo(f"node     {body.get('node', '?')}  ({body.get('role', '?')}, "
               f"term {leader.get('term', '?')})")
    click.echo(f"leader   {leader.get('name') or 'none'}"
               + (f" at {leader['address']}" if leader.get("address") else ""))
    if "commit" in body:
        click.echo(f"log      commit {body['commit']}, applied {body['applied']}")
    for name, peer in sorted((body.get("peers") or {}).items()):
        state = "connected" if peer.get("connected") else "not connected"
        click.echo(f"peer     {name} {peer.get('address')} ({state})")
