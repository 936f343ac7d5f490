"""``python -m bench.audit``: pip-audit over the locked dependencies (uv.lock, all extras),
printed as a README-ready markdown table; exit 1 on a known vulnerability.

The lock is exported without hashes and audited with ``--no-deps`` (every pin is already
in the export) and ``--disable-pip`` (nothing is installed).  A package the vulnerability
service cannot look up is listed as *not audited*, and the run fails unless
``--allow-unaudited``: an audit that checked nothing must not read as "no findings".
Needs ``pip-audit`` (``uv pip install --python .venv/bin/python pip-audit``) and network
access to the PyPI JSON API (or ``--service osv`` for api.osv.dev).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def audit(service: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        report = Path(tmp) / "audit.json"
        exported = subprocess.run(
            # visionq-client is this repository's own (clients/python, not on PyPI); its
            # dependencies are in the export and audited.
            ["uv", "export", "--locked", "--no-hashes", "--all-extras", "--no-emit-project",
             "--no-emit-package", "visionq-client", "-o", str(requirements)],
            cwd=REPO, capture_output=True, text=True)
        if exported.returncode:
            raise SystemExit(f"uv export failed:\n{exported.stderr}")
        pip_audit = shutil.which("pip-audit", path=str(Path(sys.executable).parent)) \
            or shutil.which("pip-audit")
        if pip_audit is None:
            raise SystemExit("pip-audit is not installed: "
                             "uv pip install --python .venv/bin/python pip-audit")
        subprocess.run([pip_audit, "-r", str(requirements), "--no-deps", "--disable-pip",
                        "--vulnerability-service", service, "-f", "json", "-o", str(report),
                        "--progress-spinner", "off"], cwd=REPO)
        if not report.exists():
            raise SystemExit("pip-audit wrote no report (see its output above)")
        return json.loads(report.read_text())


def table(report: dict) -> tuple[str, int, int]:
    deps = report.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if d.get("skip_reason")]
    lines = [f"Audited {len(deps) - len(skipped)} of {len(deps)} locked packages: "
             f"{sum(len(d['vulns']) for d in vulnerable)} known vulnerabilities.", ""]
    if vulnerable:
        lines += ["| Package | Version | Advisory | Fixed in |", "|---|---|---|---|"]
        for dep in vulnerable:
            for vuln in dep["vulns"]:
                ids = ", ".join([vuln["id"], *vuln.get("aliases", [])])
                fixed = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
                lines.append(f"| {dep['name']} | {dep['version']} | {ids} | {fixed} |")
    if skipped:
        lines += ["", f"Not audited ({len(skipped)}): "
                  + ", ".join(f"{d['name']}" for d in skipped[:50])
                  + (" ..." if len(skipped) > 50 else "")]
    return "\n".join(lines), len(vulnerable), len(skipped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", choices=("pypi", "osv"), default="pypi")
    parser.add_argument("--allow-unaudited", action="store_true",
                        help="do not fail when some packages could not be looked up")
    args = parser.parse_args(argv)
    markdown, vulnerable, skipped = table(audit(args.service))
    print(markdown)
    return 1 if vulnerable or (skipped and not args.allow_unaudited) else 0


if __name__ == "__main__":
    raise SystemExit(main())
