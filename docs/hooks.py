"""MkDocs hooks: repository files the pages link to as ``../path`` (benchmark JSON and
plots, deploy files) become files of the site, so those links work on GitHub and on the
site alike, and a link to a file that does not exist fails ``mkdocs build --strict``."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files, InclusionLevel

LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")


class RepositoryFile(File):
    """A repository file outside docs/, copied as it is (a ``README.md`` is not a page)."""

    def is_documentation_page(self) -> bool:
        return False

    def is_static_page(self) -> bool:
        return False


def outside_targets(docs_dir: Path) -> set[str]:
    """``../…`` link targets of every page, as paths relative to ``docs_dir``."""
    targets = set()
    for page in docs_dir.rglob("*.md"):
        folder = page.parent.relative_to(docs_dir).as_posix()
        for url in LINK.findall(page.read_text()):
            if "://" in url or url.startswith(("/", "mailto:")):
                continue
            target = posixpath.normpath(posixpath.join(folder, url))
            if target.startswith("../"):
                targets.add(target)
    return targets


def on_files(files: Files, config: Any) -> Files:
    docs_dir = Path(config["docs_dir"])
    for target in sorted(outside_targets(docs_dir)):
        if (docs_dir / target).resolve().is_file():
            files.append(RepositoryFile(target, str(docs_dir), config["site_dir"],
                                        config["use_directory_urls"],
                                        dest_uri="repo/" + target.removeprefix("../"),
                                        inclusion=InclusionLevel.NOT_IN_NAV))
    return files
