"""MkDocs hooks.

- The site's home page is the repository's README (``docs/index.md`` only names it): its
  links into ``docs/`` become links between pages, its other links ``../path`` ones.
- Repository files the pages link to as ``../path`` (benchmark JSON and plots, deploy
  files) become files of the site, so those links work on GitHub and on the site alike,
  and a link to a file that does not exist fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files, InclusionLevel

LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")
README_LINK = re.compile(r"\]\((?!\w+://|#|mailto:)([^)\s]*)\)")
HOME = "index.md"


def readme_as_home(readme: str) -> str:
    """The README with its links made relative to ``docs/``."""
    def relink(match: re.Match[str]) -> str:
        url = match.group(1)
        path, sep, anchor = url.partition("#")
        target = posixpath.normpath(posixpath.join("..", path))
        if target == "../docs" or target.startswith("../docs/"):
            target = target.removeprefix("../docs").lstrip("/") or HOME
        return f"]({target}{sep}{anchor})"
    return README_LINK.sub(relink, readme)


class RepositoryFile(File):
    """A repository file outside docs/, copied as it is (a ``README.md`` is not a page)."""

    def is_documentation_page(self) -> bool:
        return False

    def is_static_page(self) -> bool:
        return False


def outside_targets(docs_dir: Path) -> set[str]:
    """``../…`` link targets of every page (and of the README, the home page), as paths
    relative to ``docs_dir``."""
    pages = [(page.parent.relative_to(docs_dir).as_posix(), page.read_text())
             for page in docs_dir.rglob("*.md")]
    readme = docs_dir.parent / "README.md"
    if readme.is_file():
        pages.append((".", readme_as_home(readme.read_text())))
    targets = set()
    for folder, text in pages:
        for url in LINK.findall(text):
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


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    readme = Path(config["docs_dir"]).parent / "README.md"
    if page.file.src_uri != HOME or not readme.is_file():
        return markdown
    return readme_as_home(readme.read_text())
