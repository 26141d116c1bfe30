"""torchrun with avfleet's exit-code contract: `python -m avfleet.train.launch [torchrun
options] script [script args]`, the command of every PyTorchJob replica.

torchrun ends with exit 1 whenever its workers failed, whatever their own codes, and
restarts the whole worker group on any failure. Kubeflow's `restartPolicy: ExitCode`
restarts a pod only on exit codes 128-255 and treats 1-127 as permanent. So:

* each worker records its exit code in $AVFLEET_EXIT_DIR (one file per restart attempt
  and rank; `record_exit`), and a worker that finds a permanent failure recorded by an
  earlier attempt of this group ends at once with it (`permanent_failure_recorded`),
  so torchrun's restarts after bad input cost seconds, not training;
* when torchrun ends, this launcher exits with what the workers said: 0; a permanent
  code (65, 70, 78: Kubeflow fails the job); or, for a transient failure (75) or a worker
  that left no code (killed: OOM, NCCL abort, preemption), `ExitCode.RESTARTABLE` (203,
  128 + 75), which Kubeflow restarts up to the job's backoffLimit.

The local executor runs PyTorchJobs through this launcher too (workflows/local/engines).
"""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable

from avfleet.core.errors import ExitCode

log = logging.getLogger("avfleet.train")

EXIT_DIR_ENV = "AVFLEET_EXIT_DIR"
PERMANENT = (int(ExitCode.BAD_INPUT), int(ExitCode.INTERNAL), int(ExitCode.BAD_CONFIG))


def _attempt() -> int:
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def record_exit(code: int) -> None:
    """Called by a worker as it ends (jobs/train.py): its code for this attempt and rank."""
    folder = os.environ.get(EXIT_DIR_ENV)
    if not folder:
        return
    rank = os.environ.get("RANK", "0")
    path = pathlib.Path(folder, f"attempt-{_attempt():03d}-rank-{int(rank):05d}")
    path.write_text(str(int(code)))


def recorded(folder: str) -> dict[int, list[int]]:
    """attempt -> the codes its workers recorded."""
    out: dict[int, list[int]] = {}
    for path in sorted(pathlib.Path(folder).glob("attempt-*-rank-*")):
        try:
            out.setdefault(int(path.name.split("-")[1]), []).append(int(path.read_text()))
        except ValueError:
            continue
    return out


def permanent_failure_recorded() -> int | None:
    """A permanent code an earlier attempt of this worker group recorded, else None."""
    folder = os.environ.get(EXIT_DIR_ENV)
    if not folder or not os.path.isdir(folder):
        return None
    for codes in recorded(folder).values():
        for code in codes:
            if code in PERMANENT:
                return code
    return None


PEER_LOST = ("gloo/transport", "Connection reset by peer", "Connection closed by peer")
"""What a gloo collective's RuntimeError says when another rank's process went away."""


def peer_lost(error: BaseException) -> bool:
    """Whether `error` is a collective or the rendezvous failing because another rank went
    away (killed, evicted, its node lost): transient, what torchrun's restart and the resume
    from the checkpoint are for, never a bug in this rank."""
    import torch.distributed as dist

    if isinstance(error, dist.DistError):  # DistNetworkError, DistStoreError, DistBackendError
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in PEER_LOST)


def run_worker(job: Callable[[], object]) -> int:
    """A torchrun worker's main: `job` through run_main, unless an earlier attempt of this
    group already hit a permanent failure; its code recorded for the launcher. A peer lost
    mid-collective is transient (75): seen on a real cluster, a PyTorchJob's worker pod deleted
    made the master's gloo all-reduce raise, which as an internal error (70) failed the job."""
    from avfleet.core.entry import run_main
    from avfleet.core.errors import TransientError

    def guarded() -> object:
        try:
            return job()
        except RuntimeError as e:
            if peer_lost(e):
                raise TransientError(f"another rank went away: {e}") from e
            raise

    earlier = permanent_failure_recorded()
    if earlier is not None:
        log.error("an earlier attempt ended with permanent exit %d; not running again", earlier)
        code = earlier
    else:
        code = run_main(guarded)
    record_exit(code)
    return code


def exit_code_for(torchrun_code: int, codes: dict[int, list[int]]) -> int:
    """The launcher's exit code from torchrun's and the workers' recorded ones."""
    if torchrun_code == 0:
        return 0
    if torchrun_code < 0:  # torchrun itself killed by a signal: as Kubernetes would report it
        return 128 - torchrun_code
    every = [c for attempt in sorted(codes) for c in codes[attempt]]
    for code in every:
        if code in PERMANENT:
            return code
    return int(ExitCode.RESTARTABLE)


def main(argv: list[str]) -> int:
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    with tempfile.TemporaryDirectory(prefix="avfleet-exit-") as folder:
        env = {**os.environ, EXIT_DIR_ENV: folder}
        proc = subprocess.Popen([torchrun, *argv], env=env)
        # Kubernetes stops a pod with SIGTERM: pass it on so torchrun stops its workers.
        signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
        code = proc.wait()
        codes = recorded(folder)
    final = exit_code_for(code, codes)
    if code != 0:
        print(
            f"avfleet.train.launch: torchrun exit {code}, workers recorded {codes} "
            f"(attempt: codes); exiting {final}",
            file=sys.stderr,
        )
    return final


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
