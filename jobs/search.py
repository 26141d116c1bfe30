"""torchrun entry of architecture search: `torchrun --nproc_per_node=N jobs/search.py --dataset ... --out ...`.

Reads the distributed environment once, runs `avfleet.nas.search.search`,
maps errors to exit codes (75 transient: the PyTorchJob restarts the group,
which resumes from the newest complete checkpoint), recorded for avfleet.train.launch.
"""

import logging
import os
import sys

from avfleet.core.cliopts import Parser
from avfleet.core.logs import setup_logging
from avfleet.nas.entry import add_arguments, config_from_args
from avfleet.train.context import RunContext
from avfleet.train.launch import run_worker


def main(argv: list[str]) -> int:
    parser = Parser(prog="search.py", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()
    ctx = RunContext.from_env()
    os.environ.setdefault(
        "CUBLAS_WORKSPACE_CONFIG", ":4096:8"
    )  # deterministic cuBLAS (see train.py)

    def job() -> None:
        from avfleet.nas.search import search

        result = search(config_from_args(args), ctx)
        logging.getLogger("avfleet.nas").info(
            "rank %d: %d steps in %.0f s, argmax %s (table: %.3f ms)",
            ctx.rank,
            result["steps"],
            result["seconds"],
            result["argmax"],
            result["argmax_table_ms"],
        )

    return run_worker(job)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
