"""spark-submit entry of the index job: `spark-submit jobs/index_recordings.py --recordings ... --date ... --index ...`.

The master comes from spark-submit (local[N] on one machine, k8s:// or the
spark-operator in a cluster). Exit codes: 0 ok, 75 transient (the spark-operator restarts
the driver). With `--outcome URI`, a permanent failure (65/70/78) is recorded there and the
driver exits 0, so the operator does not run it again; the workflow's verify step ends with
the recorded code (avfleet.core.outcome).
"""

import logging
import sys

from avfleet.core.cliopts import Parser
from avfleet.core.logs import setup_logging
from avfleet.core.outcome import run_with_outcome
from avfleet.index import entry


def main(argv: list[str]) -> int:
    parser = Parser(prog="index_recordings.py", description=__doc__)
    entry.add_arguments(parser)
    parser.add_argument(
        "--outcome", default=None, help="where a permanent failure is recorded (exit 0 then)"
    )
    args = parser.parse_args(argv)
    setup_logging()

    def job() -> None:
        report = entry.run(args, master=None)
        logging.getLogger("avfleet.index").info(
            "run %s: %d files, %d indexed, %d quarantined, %d frames",
            report.run_id,
            report.num_files,
            report.num_indexed,
            report.num_quarantined,
            report.num_frames,
        )

    return run_with_outcome(job, args.outcome, entry.storage_from_args(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
