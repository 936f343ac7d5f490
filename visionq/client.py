"""A small Python client for visionq's job API (used by ``visionq submit``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests

DEFAULT_URL = "http://127.0.0.1:8000"


class VisionqError(RuntimeError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Client:
    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None,
                 timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s = timeout_s

    def _check(self, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200], "code": "not_json"}
        if response.status_code >= 400:
            raise VisionqError(response.status_code, body.get("code", "error"),
                               body.get("error", ""))
        return body

    def submit(self, image: bytes | str | Path, task: str,
               options: dict[str, Any] | None = None) -> dict[str, Any]:
        data = Path(image).read_bytes() if isinstance(image, str | Path) else image
        form = {"options": json.dumps(options)} if options else {}
        response = self.session.post(f"{self.base_url}/v1/jobs", params={"task": task},
                                     files={"image": ("image", data)}, data=form,
                                     timeout=self.timeout_s)
        return self._check(response)

    def job(self, job_id: str, wait_s: float = 0) -> dict[str, Any]:
        params = {"wait": wait_s} if wait_s else {}
        response = self.session.get(f"{self.base_url}/v1/jobs/{job_id}", params=params,
                                    timeout=self.timeout_s + wait_s)
        return self._check(response)

    def wait(self, job_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            job = self.job(job_id, wait_s=max(0.0, min(10.0, remaining)))
            if job["status"] in ("succeeded", "failed") or remaining <= 0:
                return job

    def run(self, image: bytes | str | Path, task: str,
            options: dict[str, Any] | None = None, timeout_s: float = 60.0) -> dict[str, Any]:
        return self.wait(self.submit(image, task, options)["id"], timeout_s)
