"""The docs site builds with ``mkdocs build --strict``: a dead link between pages, an
anchor that no heading has, a page missing from the nav or a link to a repository file
that does not exist (``../bench/results/…``) fails ``make test``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    text = text.split("\nnav:")[0] + "\nnav:\n  - Overview: index.md\n"
    config.write_text(text)
    done = build(tmp_path / "site", config)
    assert done.returncode != 0
    assert "nowhere.md" in done.stderr and "gone.json" in done.stderr
