"""spark-submit entry of the index job: `spark-submit jobs/index_recordings.py --recordings ... --date ... --out ...`.

The master comes from spark-submit (local[N] on one machine, k8s:// or the
spark-operator in a cluster). Exit codes: 0 ok, 75 transient (retried), 65/78 permanent.
"""

import argparse
import logging
import sys

from avfleet.core.entry import run_main
from avfleet.core.logs import setup_logging
from avfleet.index import entry


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="index_recordings.py", description=__doc__)
    entry.add_arguments(parser)
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

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
