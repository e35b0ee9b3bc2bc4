"""`[[watchers]] use = "webhook"` in a manifest: clear errors for bad settings, and a node
started from a manifest delivering its writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aether_webhook import deadletter, verify
from aether_webhook.watcher import WebhookWatcher
from webhook_receiver import Receiver, wait_until

from aether_core.errors import ConfigurationError
from aether_core.manifest import load
from aether_core.node import Node

SECRET = "manifest-hmac-key-0123456789abcdef"
HEAD = """
[node]
data_dir = "{data}"
[storage]
use = "memory"
[transport]
use = "local"
"""


def manifest(tmp_path: Path, watchers: str) -> Path:
    path = tmp_path / "aether.toml"
    path.write_text(HEAD.format(data=tmp_path / "data") + watchers)
    return path


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)


@pytest.mark.parametrize(("body", "message"), [
    ('secret = "${env:HOOK_SECRET}"',
     '[[watchers]] #1 url: required key is missing'),
    ('url = "ftp://example.org/x"\nsecret = "${env:HOOK_SECRET}"',
     "[[watchers]] #1 url: must be an http:// or https:// URL with a host"),
    ('url = "https://user:pw@example.org/x"\nsecret = "${env:HOOK_SECRET}"',
     "[[watchers]] #1 url: must not carry credentials"),
    (f'url = "https://example.org/x"\nsecret = "{SECRET}"',
     '[[watchers]] #1 secret: must come from "${env:NAME}" or "${file:PATH}", never inline'),
    ('url = "https://example.org/x"\nsecret = "${env:NOT_SET_ANYWHERE}"',
     "[[watchers]] #1 secret: environment variable NOT_SET_ANYWHERE is not set"),
    ('url = "https://example.org/x"\nsecret = "${env:HOOK_SECRET}"\nmax_attempts = "ten"',
     '[[watchers]] #1 max_attempts: expected int, got "ten"'),
    ('url = "https://example.org/x"\nsecret = "${env:HOOK_SECRET}"\nretries = 3',
     "[[watchers]] #1 retries: unknown key"),
    ('url = "https://example.org/x"\nsecret = "${env:HOOK_SECRET}"\nbackoff = 10\n'
     'backoff_max = 1', "[[watchers]] #1: backoff_max must be at least backoff"),
])
def test_bad_settings_name_the_file_the_section_and_the_key(
    tmp_path: Path, body: str, message: str
) -> None:
    path = manifest(tmp_path, f'[[watchers]]\nuse = "webhook"\n{body}\n')
    with pytest.raises(ConfigurationError) as info:
        load(path)
    assert info.value.detail.startswith(f"{path}: ")
    assert message in info.value.detail
    assert SECRET not in info.value.detail


def test_a_short_secret_is_refused_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "tiny-key")
    path = manifest(tmp_path, '[[watchers]]\nuse = "webhook"\nurl = "https://example.org/"\n'
                              'secret = "${env:HOOK_SECRET}"\n')
    with pytest.raises(ConfigurationError) as info:
        load(path)
    assert "[[watchers]] #1 secret: must be at least 16 bytes long" in info.value.detail
    assert "tiny-key" not in info.value.detail


def test_a_secret_from_a_file_is_accepted_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "hook.key").write_text(SECRET + "\n")
    path = manifest(tmp_path, '[[watchers]]\nuse = "webhook"\nurl = "https://example.org/"\n'
                              'secret = "${file:hook.key}"\n')
    settings = load(path).watchers[0].settings
    assert settings.secret.get_secret_value() == SECRET  # type: ignore[attr-defined]
    assert SECRET not in repr(settings) and SECRET not in str(settings)


async def test_a_node_from_a_manifest_posts_its_writes_and_dead_letters_into_its_data_dir(
    tmp_path: Path, receiver: Receiver, dead_port: int
) -> None:
    path = manifest(tmp_path, f"""
[[watchers]]
use = "webhook"
url = "{receiver.url}"
secret = "${{env:HOOK_SECRET}}"
prefix = "billing/"

[[watchers]]
use = "webhook"
url = "http://127.0.0.1:{dead_port}/"
secret = "${{env:HOOK_SECRET}}"
max_attempts = 2
backoff = 0.01
""")
    node = Node(load(path))
    await node.start()
    try:
        assert [type(w) for w in node.watchers] == [WebhookWatcher, WebhookWatcher]
        await node.config.put("shipping/rates", {"eu": 5})
        await node.config.put("billing/database", {"port": 5432})
        await wait_until(lambda: len(receiver.accepted()) == 1)
        letters_path = tmp_path / "data" / "webhook-dead-letters.jsonl"
        await wait_until(lambda: len(deadletter.read(letters_path)) == 2)
    finally:
        await node.stop()
    request = receiver.accepted()[0]
    assert verify(SECRET, request.body, request.headers) == "rev-2"
    assert b'"billing/database"' in request.body
    await asyncio.sleep(0.05)
    assert len(receiver.requests) == 1  # the prefix kept shipping/ away
    assert [d.event.name for d in deadletter.read(letters_path)] == [
        "shipping/rates", "billing/database"]
