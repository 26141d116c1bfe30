"""torchrun entry of training: `torchrun --nproc_per_node=N jobs/train.py --dataset ... --out ...`.

Reads the distributed environment once (RANK, WORLD_SIZE, LOCAL_RANK), runs
`avfleet.train.loop.train`, maps errors to exit codes (75 transient: the
PyTorchJob restarts the group). Run under `python -m avfleet.train.launch`, which turns
the workers' codes into one Kubeflow understands; each worker records its own here.
"""

import logging
import os
import sys

from avfleet.core.cliopts import Parser
from avfleet.core.logs import setup_logging
from avfleet.train.context import RunContext
from avfleet.train.entry import add_arguments, config_from_args
from avfleet.train.launch import run_worker


def main(argv: list[str]) -> int:
    parser = Parser(prog="train.py", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()
    ctx = RunContext.from_env()
    # The trainer asks for deterministic kernels; on CUDA, cuBLAS needs a fixed workspace for
    # that (https://docs.nvidia.com/cuda/cublas/#results-reproducibility), set before CUDA starts.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    def job() -> None:
        from avfleet.train.loop import train

        result = train(config_from_args(args), ctx)
        logging.getLogger("avfleet.train").info("rank %d: %s", ctx.rank, result)

    return run_worker(job)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
