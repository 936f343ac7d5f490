"""The docs site builds with ``mkdocs build --strict``: a dead link between pages, an
anchor that no heading has, a page missing from the nav or a link to a repository file
that does not exist (``../bench/results/…``) fails ``make test``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pymdownx.slugs import slugify

from tests.test_layering import product_folders

REPO = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).parent / "mkdocs"


def build(site: Path, config: Path = REPO / "mkdocs.yml") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--config-file", str(config), "--site-dir",
         str(site)], cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_site_builds_strict(tmp_path: Path) -> None:
    done = build(tmp_path / "site")
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()


def test_a_dead_link_fails_the_build(tmp_path: Path) -> None:
    """The check above can fail: the same site with one page linking a missing page and
    one a missing benchmark file does not build."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](nowhere.md) [json](../bench/results/gone.json)\n")
    config = tmp_path / "mkdocs.yml"
    text = (REPO / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
    text = text.replace("  - docs/hooks.py", f"  - {REPO / 'docs' / 'hooks.py'}")
    text = text.replace("  - README.md", f"  - {REPO / 'README.md'}")
    text = text.split("\nnav:")[0] + "\nnav:\n  - Overview: index.md\n"
    config.write_text(text)
    done = build(tmp_path / "site", config)
    assert done.returncode != 0
    assert "nowhere.md" in done.stderr and "gone.json" in done.stderr


def headings(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (as the site's, pymdownx's slugify)."""
    slug = slugify(case="lower")
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)  # no '#' comments of code
    return {slug(re.sub(r"[`*]", "", title), "-") for title in re.findall(r"^#+ (.+)$", text,
                                                                          re.M)}


def test_anchors_into_repository_files_exist() -> None:
    """A link from the README or a page to a heading of a repository Markdown file outside
    docs/ (bench/results/HISTORY.md, ...) names a heading it has: the site copies such files
    as they are, so mkdocs cannot check those anchors itself."""
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for path, anchor in re.findall(r"\]\(([^)#\s]+\.md)#([^)\s]+)\)", page.read_text()):
            target = (page.parent / path).resolve()
            if (REPO / "docs") in target.parents or not target.is_file():
                continue  # pages: mkdocs checks them; a missing file: the build fails
            if anchor not in headings(target.read_text()):
                broken.append(f"{page.relative_to(REPO)}: {path}#{anchor}")
    assert not broken, broken


def test_product_code_cites_docs_pages_that_exist() -> None:
    """Docstrings and ``--help`` texts send readers to ``docs/<page>.md`` (the README keeps
    only the first minutes): every page they name exists, and none cites a README section,
    which moved to docs/ (issue 27)."""
    cited, readme = [], []
    for folder in product_folders():
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            where = path.relative_to(REPO)
            cited += [(where, page) for page in re.findall(r"docs/([\w/-]+\.md)", text)]
            readme += [f"{where}:{text.count(chr(10), 0, m.start()) + 1}"
                       for m in re.finditer(r"README(?!\.md)", text)]
    assert cited, "no product module cites a docs page: the pattern is broken"
    assert [(w, p) for w, p in cited if not (REPO / "docs" / p).is_file()] == []
    assert readme == [], f"README sections cited (they live in docs/ now): {readme}"
