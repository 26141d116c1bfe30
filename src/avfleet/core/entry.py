"""How entry points end: map exceptions to exit codes (see avfleet.core.errors)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from avfleet.core.errors import AvfleetError, ExitCode, exit_code_for

log = logging.getLogger("avfleet")


def run_main(
    fn: Callable[[], int | None], on_error: Callable[[int, str], None] | None = None
) -> int:
    """Run `fn`; a clean message and the right exit code on failure, a traceback only for bugs.
    `on_error(code, message)` hears of a failure before the code is returned."""
    try:
        return int(fn() or ExitCode.OK)
    except (AvfleetError, ValueError) as e:
        code = exit_code_for(e) if isinstance(e, AvfleetError) else ExitCode.BAD_CONFIG
        kind = "transient" if code == ExitCode.TRANSIENT else "permanent"
        log.error("%s error (exit %d): %s", kind, code, e)
        if e.__cause__ is not None:
            log.error("  caused by %s: %s", type(e.__cause__).__name__, e.__cause__)
        message = str(e)
    except KeyboardInterrupt:
        log.error("interrupted")
        code, message = ExitCode.TRANSIENT, "interrupted"
    except Exception as e:
        log.exception("internal error")
        code, message = ExitCode.INTERNAL, f"internal error: {type(e).__name__}: {e}"
    if on_error is not None:
        on_error(int(code), message)
    return int(code)
