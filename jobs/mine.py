"""Entry of the mining job: `python jobs/mine.py --index ... --date ... --model NAME:VERSION --repo ... --budget K --out ...`.

Exit codes: 0 ok, 75 transient (Triton unavailable, storage hiccup: retried), 65/78 permanent.
"""

import logging
import sys

from avfleet.core.cliopts import Parser
from avfleet.core.entry import run_main
from avfleet.core.logs import setup_logging
from avfleet.mining import entry
from avfleet.workflows.outputs import write_outputs


def main(argv: list[str]) -> int:
    parser = Parser(prog="mine.py", description=__doc__)
    entry.add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()

    def job() -> None:
        report = entry.run(args)
        write_outputs(args.outputs_dir, entry.output_parameters(args))
        logging.getLogger("avfleet.mining").info(
            "%d candidates of %d frames, %d scored (%d shards skipped), %d selected",
            report.candidates,
            report.frames_indexed,
            report.frames_scored,
            report.shards_skipped,
            report.selected,
        )

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
