"""The file sink over a real file system and real reload processes: never a half-written
file, one reload per change, templates over several configs, signals to a pid."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import threading
from pathlib import Path

import structlog
from aether_filesink.watcher import FileSinkWatcher
from filesink_helpers import wait_until

from aether_core import ConfigManager


async def attach(manager: ConfigManager, watcher: FileSinkWatcher) -> FileSinkWatcher:
    await watcher.start_with(manager)
    manager.hub.add_watcher(watcher)
    return watcher


def appended(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def record_reloads(log: Path) -> list[str]:
    # An argv list; the shell here belongs to the test's command, not to the watcher.
    return ["sh", "-c", f'echo "$AETHER_REVISION" >> {log}']


async def test_a_reader_never_sees_a_half_written_file_and_each_change_reloads_once(
    manager: ConfigManager, tmp_path: Path
) -> None:
    target, log = tmp_path / "app.json", tmp_path / "reloads.log"
    watcher = await attach(manager, FileSinkWatcher(
        target, config="app/settings", reload_command=record_reloads(log), mode=0o640))
    stop = threading.Event()
    reads: list[int] = []
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                text = target.read_text()
            except FileNotFoundError:
                continue
            try:
                reads.append(json.loads(text)["n"])
            except (ValueError, KeyError) as exc:
                bad.append(f"{exc}: {text[:80]!r}…{text[-80:]!r}")

    thread = threading.Thread(target=reader)
    thread.start()
    revisions = []
    try:
        for n in range(1, 121):
            # ~40 KB per version, so a torn write would be caught mid-file.
            value = {"n": n, "rows": [{"i": i, "text": f"row {i} of version {n}"} for i in
                                      range(1200)]}
            revisions.append(str((await manager.put("app/settings", value)).revision))
            if n % 10 == 0:
                await asyncio.sleep(0.01)
        await wait_until(lambda: watcher.reloads == 120, timeout=30)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 10)
    assert bad == []
    assert len(reads) > 100 and reads == sorted(reads)  # many reads, never going back
    assert len(set(reads)) > 10  # and they saw the file while it was changing
    assert json.loads(target.read_text())["n"] == 120
    assert appended(log) == revisions  # one reload per change, in order
    assert watcher.writes == watcher.reloads == 120
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    leftovers = await asyncio.to_thread(
        lambda: [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")])
    assert leftovers == []


async def test_a_template_sees_configs_by_name_and_reloads_only_when_its_output_changes(
    manager: ConfigManager, tmp_path: Path
) -> None:
    template = tmp_path / "upstream.conf.j2"
    template.write_text(
        "# revision {{ revision }}\n"
        "upstream db { server {{ configs['billing/database'].host }}:"
        "{{ configs['billing/database'].port }}; }\n"
        "{% for name, value in configs | dictsort %}"
        "{% if name.startswith('flags/') %}{{ name }} = {{ value | to_json }}\n{% endif %}"
        "{% endfor %}"
    )
    target, log = tmp_path / "upstream.conf", tmp_path / "reloads.log"
    await manager.put("billing/database", {"host": "db1", "port": 5432})
    await manager.put("shipping/ignored", 1)
    watcher = await attach(manager, FileSinkWatcher(
        target, template=template, configs=["billing/database"], prefix="flags/",
        reload_command=record_reloads(log)))
    assert target.read_text() == "# revision 2\nupstream db { server db1:5432; }\n"
    assert appended(log) == ["2"]  # the first render counts as a change too

    await manager.put("flags/beta", {"on": True, "who": "<staff>"})
    await manager.put("shipping/ignored", 2)  # not a config the template sees
    await manager.put("billing/database", {"host": "db2", "port": 5433})
    await wait_until(lambda: watcher.reloads == 3)
    assert target.read_text() == (
        "# revision 5\nupstream db { server db2:5433; }\n"
        'flags/beta = {"on": true, "who": "<staff>"}\n'
    )
    assert appended(log) == ["2", "3", "5"]
    assert watcher.reloads == 3


async def test_an_unchanged_rendering_neither_rewrites_nor_reloads(
    manager: ConfigManager, tmp_path: Path
) -> None:
    target, log = tmp_path / "a.json", tmp_path / "reloads.log"
    await manager.put("a", {"x": 1})
    watcher = await attach(manager, FileSinkWatcher(target, config="a",
                                                    reload_command=record_reloads(log)))
    inode = os.stat(target).st_ino
    await manager.put("a", {"x": 1})  # same value, new version
    await manager.put("a", {"x": 2})
    await wait_until(lambda: watcher.reloads == 2)
    assert appended(log) == ["1", "3"]
    assert os.stat(target).st_ino != inode and json.loads(target.read_text()) == {"x": 2}


async def test_a_deleted_config_leaves_its_file_as_it_was(
    manager: ConfigManager, tmp_path: Path
) -> None:
    target, log = tmp_path / "a.json", tmp_path / "reloads.log"
    await manager.put("a", {"x": 1})
    with structlog.testing.capture_logs() as logs:
        watcher = await attach(manager, FileSinkWatcher(target, config="a",
                                                        reload_command=record_reloads(log)))
        await manager.delete("a")
        await wait_until(lambda: any(e["event"].startswith("config is missing") for e in logs))
    assert json.loads(target.read_text()) == {"x": 1}
    assert watcher.reloads == 1 and appended(log) == ["1"]


async def test_an_existing_up_to_date_file_is_not_rewritten_at_start(
    manager: ConfigManager, tmp_path: Path
) -> None:
    target, log = tmp_path / "a.json", tmp_path / "reloads.log"
    await manager.put("a", {"x": 1})
    first = FileSinkWatcher(target, config="a", reload_command=record_reloads(log))
    await first.start_with(manager)
    second = FileSinkWatcher(target, config="a", reload_command=record_reloads(log))
    await second.start_with(manager)  # a node restart with nothing new
    assert (first.writes, second.writes, appended(log)) == (1, 0, ["1"])


async def test_a_template_that_cannot_render_keeps_the_last_good_file_until_a_later_change(
    manager: ConfigManager, tmp_path: Path
) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ configs['svc/a'].port }} {{ configs['svc/b'].port }}\n")
    target = tmp_path / "out.txt"
    with structlog.testing.capture_logs() as logs:
        watcher = await attach(manager, FileSinkWatcher(target, template=template,
                                                        configs=["svc/a", "svc/b"]))
        await manager.put("svc/a", {"port": 1})
        await manager.put("svc/b", {"port": 2})
        await wait_until(lambda: watcher.writes == 1)
        assert target.read_text() == "1 2\n"
        await manager.delete("svc/b")
        await manager.put("svc/a", {"port": 3})
        await asyncio.sleep(0.1)
        assert target.read_text() == "1 2\n"  # svc/b is gone: the last good file stays
        await manager.put("svc/b", {"port": 4})
        await wait_until(lambda: watcher.writes == 2)
    assert target.read_text() == "3 4\n"
    failures = [e for e in logs if e["event"].startswith("template did not render")]
    assert len(failures) == 4 and "svc/b" in failures[-1]["error"]


async def test_a_failing_reload_command_is_logged_and_later_changes_still_land(
    manager: ConfigManager, tmp_path: Path
) -> None:
    target = tmp_path / "a.json"
    with structlog.testing.capture_logs() as logs:
        watcher = await attach(manager, FileSinkWatcher(
            target, config="a", reload_command=["sh", "-c", "exit 3"]))
        await manager.put("a", 1)
        await manager.put("a", 2)
        await wait_until(lambda: sum(e["event"] == "reload command failed" for e in logs) == 2)
    assert target.read_text() == "2\n" and watcher.writes == 2 and watcher.reloads == 0
    assert [e["status"] for e in logs if e["event"] == "reload command failed"] == [3, 3]


CHILD = """
import os, signal, sys, time
log = sys.argv[1]
def reload(signum, frame):
    with open(log, "a") as f:
        f.write(open(sys.argv[2]).read().strip() + "\\n")
signal.signal(signal.SIGHUP, reload)
open(sys.argv[3], "w").write(str(os.getpid()))
while True:
    time.sleep(0.05)
"""


async def test_a_signal_goes_to_the_pid_in_the_pid_file_once_per_change(
    manager: ConfigManager, tmp_path: Path
) -> None:
    target, log, pid_file = tmp_path / "a.json", tmp_path / "seen.log", tmp_path / "svc.pid"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(log), str(target), str(pid_file))
    try:
        await wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
        watcher = await attach(manager, FileSinkWatcher(
            target, config="svc", reload_signal=signal.SIGHUP, pid_file=pid_file))
        for n in range(1, 4):
            await manager.put("svc", n)
            # Signals of one kind do not queue, so each change waits for the last one.
            await wait_until(lambda n=n: appended(log) == [str(i) for i in range(1, n + 1)])
        assert watcher.reloads == 3
    finally:
        child.kill()
        await child.wait()
