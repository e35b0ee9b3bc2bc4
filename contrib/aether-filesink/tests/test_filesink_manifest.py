"""`[[watchers]] use = "file"` in a manifest: clear errors for bad settings, and a node
started from a manifest keeping a file in step with its configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aether_filesink.watcher import FileSinkWatcher
from filesink_helpers import wait_until

from aether_core.errors import ConfigurationError
from aether_core.manifest import load
from aether_core.node import Node

HEAD = """
[node]
data_dir = "data"
[storage]
use = "memory"
[transport]
use = "local"
"""


def manifest(tmp_path: Path, watchers: str) -> Path:
    path = tmp_path / "aether.toml"
    path.write_text(HEAD + watchers)
    return path


@pytest.mark.parametrize(("body", "message"), [
    ('config = "app/a"',
     "[[watchers]] #1 target: required key is missing"),
    ('target = "missing-dir/out.json"\nconfig = "app/a"',
     "[[watchers]] #1 target: directory {tmp}/missing-dir does not exist"),
    ('target = "out.json"',
     "[[watchers]] #1: give exactly one of `config` (one config as JSON) or `template`"),
    ('target = "out.json"\nconfig = "app/a"\ntemplate = "ok.j2"',
     "[[watchers]] #1: give exactly one of `config`"),
    ('target = "out.json"\ntemplate = "ok.j2"',
     "[[watchers]] #1: a template needs `configs` (names) or `prefix`"),
    ('target = "out.json"\ntemplate = "broken.j2"\nconfigs = ["app/a"]',
     "[[watchers]] #1 template: {tmp}/broken.j2:3: Expected an expression, got 'end of "
     "statement block'"),
    ('target = "out.json"\ntemplate = "nowhere.j2"\nconfigs = ["app/a"]',
     "[[watchers]] #1 template: template file {tmp}/nowhere.j2 does not exist"),
    ('target = "out.json"\nconfig = "app a"',
     "[[watchers]] #1 config: config name 'app a' is invalid"),
    ('target = "out.json"\nconfig = "app/a"\nreload_command = "nginx -s reload"',
     "[[watchers]] #1 reload_command: expected list"),
    ('target = "out.json"\nconfig = "app/a"\nreload_command = []',
     "[[watchers]] #1 reload_command: must be a non-empty argv list"),
    ('target = "out.json"\nconfig = "app/a"\nreload_signal = "HUP"',
     "[[watchers]] #1: `reload_signal` and `pid_file` go together"),
    ('target = "out.json"\nconfig = "app/a"\nreload_signal = "WAKEUP"\npid_file = "x.pid"',
     "[[watchers]] #1 reload_signal: 'WAKEUP' is not a signal name"),
    ('target = "out.json"\nconfig = "app/a"\nreload_command = ["true"]\n'
     'reload_signal = "HUP"\npid_file = "x.pid"',
     "[[watchers]] #1: give `reload_command` or `reload_signal`, not both"),
    ('target = "out.json"\nconfig = "app/a"\nmode = "rw-r--r--"',
     '[[watchers]] #1 mode: must be octal permission bits such as "0640"'),
    ('target = "out.json"\nconfig = "app/a"\nreload = "HUP"',
     "[[watchers]] #1 reload: unknown key"),
])
def test_bad_settings_name_the_file_the_section_and_the_key(
    tmp_path: Path, body: str, message: str
) -> None:
    (tmp_path / "ok.j2").write_text("{{ configs }}\n")
    (tmp_path / "broken.j2").write_text("line one\n{{ configs['app/a'] }}\n{% if %}\n")
    path = manifest(tmp_path, f'[[watchers]]\nuse = "file"\n{body}\n')
    with pytest.raises(ConfigurationError) as info:
        load(path)
    assert info.value.detail.startswith(f"{path}: ")
    assert message.replace("{tmp}", str(tmp_path)) in info.value.detail


def test_relative_paths_are_relative_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "t.j2").write_text("x\n")
    path = manifest(tmp_path, '[[watchers]]\nuse = "file"\ntarget = "etc/out.conf"\n'
                              'template = "etc/t.j2"\nprefix = "app/"\n'
                              'reload_signal = "sighup"\npid_file = "run/svc.pid"\n')
    settings = load(path).watchers[0].settings
    assert settings.target == str(tmp_path / "etc" / "out.conf")  # type: ignore[attr-defined]
    assert settings.template == str(tmp_path / "etc" / "t.j2")  # type: ignore[attr-defined]
    assert settings.pid_file == str(tmp_path / "run" / "svc.pid")  # type: ignore[attr-defined]
    assert settings.reload_signal == "SIGHUP"  # type: ignore[attr-defined]


async def test_a_node_from_a_manifest_renders_its_configs_and_reloads_once_per_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the manifest's data_dir is relative
    (tmp_path / "env.j2").write_text(
        "DB_HOST={{ configs['billing/database'].host }}\n"
        "{% for name, value in configs | dictsort %}{% if name.startswith('billing/flags/') %}"
        "{{ name.split('/')[-1] | upper }}={{ value }}\n{% endif %}{% endfor %}"
    )
    log = tmp_path / "reloads.log"
    path = manifest(tmp_path, f"""
[[watchers]]
use = "file"
target = "database.json"
config = "billing/database"
reload_command = ["sh", "-c", "echo db-$AETHER_REVISION >> {log}"]

[[watchers]]
use = "file"
target = "billing.env"
template = "env.j2"
configs = ["billing/database"]
prefix = "billing/flags/"
mode = "0600"
reload_command = ["sh", "-c", "echo env-$AETHER_REVISION >> {log}"]
""")
    node = Node(load(path))
    await node.start()
    try:
        assert [type(w) for w in node.watchers] == [FileSinkWatcher, FileSinkWatcher]
        await node.config.put("billing/database", {"host": "db1", "port": 5432})
        await node.config.put("billing/flags/beta", "on")
        await node.config.put("shipping/rates", {"eu": 5})
        await node.config.put("billing/database", {"host": "db2", "port": 5432})
        await wait_until(lambda: sum(w.reloads for w in node.watchers) == 5)  # type: ignore[attr-defined]
    finally:
        await node.stop()
    assert json.loads((tmp_path / "database.json").read_text()) == {"host": "db2", "port": 5432}
    assert (tmp_path / "billing.env").read_text() == "DB_HOST=db2\nBETA=on\n"
    assert (tmp_path / "billing.env").stat().st_mode & 0o777 == 0o600
    assert sorted(log.read_text().split()) == sorted(
        ["db-1", "db-4", "env-1", "env-2", "env-4"])
