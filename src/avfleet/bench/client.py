"""The bench agent's client: the one adapter over its HTTP API (the operator and local runs use it).

Errors keep their kind: a bench that does not answer is `BenchUnavailable`
(transient: the validation moves to another bench), a busy bench is `BenchBusy`
(transient: try another or later), and a refusal (bad token, malformed model or
request) is permanent, with the agent's own message.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from avfleet.core.errors import ConfigError, PermanentError, TransientError

TOKEN_ENV = "AVFLEET_BENCH_TOKEN"
"""A bench agent's own token (in the cluster: the Secret its XavierBench names)."""


def token_from_env() -> str:
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise ConfigError("token", f"set ${TOKEN_ENV} to the bench's token")
    return token


class BenchUnavailable(TransientError):
    """The bench did not answer (down, unreachable, timed out)."""


class BenchBusy(TransientError):
    """The bench runs another job (one at a time)."""


CA_ENV = "AVFLEET_BENCH_CA"
"""PEM file of the CA that signed the benches' certificates (https:// addresses)."""


class BenchClient:
    """One bench's agent. Its token goes only to its own address; https:// verifies the
    agent's certificate against $AVFLEET_BENCH_CA (or the system's CAs)."""

    def __init__(
        self, address: str, token: str, timeout_s: float = 10.0, ca_file: str | None = None
    ) -> None:
        self.address = address.rstrip("/")
        if not self.address.startswith(("http://", "https://")):
            self.address = f"http://{self.address}"
        self.token = token
        self.timeout_s = timeout_s
        self.context = None
        if self.address.startswith("https://"):
            import ssl

            self.context = ssl.create_default_context(
                cafile=ca_file or os.environ.get(CA_ENV) or None
            )

    def _call(self, method: str, path: str, doc: dict | None = None) -> tuple[int, dict]:
        data = None if doc is None else json.dumps(doc).encode()
        request = urllib.request.Request(f"{self.address}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout_s, context=self.context
            ) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            try:
                body = json.loads(e.read())
            except ValueError:
                body = {"error": e.reason}
            return e.code, body
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            raise BenchUnavailable(f"bench {self.address} did not answer {method} {path}") from e

    def _checked(self, method: str, path: str, doc: dict | None = None) -> dict:
        code, body = self._call(method, path, doc)
        if code in (200, 202):
            return body
        message = f"bench {self.address}: {method} {path} -> {code}: {body.get('error')}"
        if code == 409:
            raise BenchBusy(message)
        if code >= 500:
            raise BenchUnavailable(message)
        raise PermanentError(message)

    def health(self) -> dict:
        return self._checked("GET", "/healthz")

    def submit(self, request: dict) -> str:
        """The job's id (the same job again when the same request is resubmitted)."""
        return self._checked("POST", "/v1/jobs", request)["job_id"]

    def job(self, job_id: str) -> dict:
        return self._checked("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        """Stop a running job (the agent frees the bench at the job's next check)."""
        return self._checked("DELETE", f"/v1/jobs/{job_id}")

    def submit_profile(self, units: list[dict]) -> str:
        """A profiling job's id: measure operator units on this bench (avfleet.bench.profile)."""
        return self._checked("POST", "/v1/profile", {"units": units})["job_id"]

    def wait(self, job_id: str, timeout_s: float, poll_s: float = 0.2) -> dict:
        """The job's report once it succeeded; PermanentError when it failed, BenchUnavailable on timeout."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            doc = self.job(job_id)
            if doc["state"] == "succeeded":
                return doc["report"]
            if doc["state"] == "failed":
                raise PermanentError(
                    f"bench {self.address}: job {job_id} failed: {doc.get('error')}"
                )
            if time.monotonic() > deadline:
                raise BenchUnavailable(
                    f"bench {self.address}: job {job_id} still running after {timeout_s:.0f} s"
                )
            time.sleep(poll_s)
