"""Error kinds and the exit codes that decide retries.

Argo's retryStrategy retries a step only on `ExitCode.TRANSIENT` (see
`avfleet.workflows.templates.retry_on_transient`). Everything else is final:
retrying bad input or a bad config only burns cluster time. Codes follow
sysexits.h so that they are recognisable in pod statuses.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    BAD_INPUT = 65  # EX_DATAERR: input data is wrong; permanent
    INTERNAL = 70  # EX_SOFTWARE: a bug; permanent, page a human
    TRANSIENT = 75  # EX_TEMPFAIL: try again later (S3 503, server unavailable, preemption)
    BAD_CONFIG = 78  # EX_CONFIG: configuration is wrong; permanent
    RESTARTABLE = 128 + 75  # TRANSIENT where a controller restarts only 128-255 (Kubeflow's
    # ExitCode policy): avfleet.train.launch ends a PyTorchJob replica with it


class AvfleetError(Exception):
    """Base of avfleet's own errors. `exit_code` says how a job ends on it."""

    exit_code: ExitCode = ExitCode.INTERNAL


class PermanentError(AvfleetError):
    """Bad input or state that a retry cannot fix."""

    exit_code = ExitCode.BAD_INPUT


class ConfigError(PermanentError, ValueError):
    """A config value is wrong. The message names the field."""

    exit_code = ExitCode.BAD_CONFIG

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"config field {field!r}: {problem}")
        self.field = field


class TransientError(AvfleetError):
    """A failure that may pass: the step exits with TRANSIENT and Argo retries it."""

    exit_code = ExitCode.TRANSIENT


class StorageError(TransientError):
    """The object store failed in a way that may pass (timeouts, 5xx)."""


class NotFoundError(PermanentError, FileNotFoundError):
    """An input URI that should exist does not."""


class RecordingError(PermanentError):
    """A recording cannot be parsed. Names the file and the byte offset."""

    def __init__(self, uri: str, offset: int | None, problem: str) -> None:
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{uri}{where}: {problem}")
        self.uri = uri
        self.offset = offset
        self.problem = problem


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code a job ends with on `error` (unknown exceptions are bugs)."""
    if isinstance(error, AvfleetError):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.TRANSIENT
    return ExitCode.INTERNAL
