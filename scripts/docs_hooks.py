"""MkDocs hooks (``hooks:`` in mkdocs.yml).

* ``on_config``: every page under docs/ that the nav leaves out goes under "More", so a
  page another change adds is published (and link-checked) without editing the nav.
* ``on_files``: the reference pages generated from the code are added to the build.
* ``on_page_markdown``: a link to a repository file outside docs/ (``../bench/README.md``)
  becomes the file's path in code, since the site does not publish it; a link to a
  file that does not exist is left alone, so ``--strict`` still fails on it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docs_reference  # found through the path set just above

_LINK = re.compile(r"\[([^\]]+)\]\((\.\./[^)#\s]+)(#[^)]*)?\)")


def _nav_pages(nav: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(nav, str):
        found.add(nav)
    elif isinstance(nav, list):
        for item in nav:
            found |= _nav_pages(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            found |= _nav_pages(value)
    return found


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    listed = _nav_pages(config.nav)
    docs = Path(config.docs_dir)
    extra = sorted(str(p.relative_to(docs)) for p in docs.rglob("*.md")
                   if str(p.relative_to(docs)) not in listed)
    if extra and config.nav is not None:
        config.nav.append({"More": extra})
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for key, path in docs_reference.PAGES.items():
        content = docs_reference.PAGE_BUILDERS[key]()
        files.append(File.generated(config, path, content=content))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    source = Path(config.docs_dir) / page.file.src_path

    def replace(match: re.Match[str]) -> str:
        target = (source.parent / match.group(2)).resolve()
        docs = Path(config.docs_dir).resolve()
        if target.is_relative_to(docs) or not target.exists():
            return match.group(0)
        relative = target.relative_to(docs_reference.ROOT)
        return f"{match.group(1)} (`{relative}` in the repository)"

    return _LINK.sub(replace, markdown)
