"""Logging set-up for entry points: one line per event, key=value friendly."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if root.handlers:
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # py4j and botocore are chatty at INFO; petastorm says at INFO, for every dataset it opens,
    # that our plain Parquet datasets have no Unischema (they need none).
    for noisy in ("py4j", "botocore", "s3fs", "aiobotocore", "urllib3", "matplotlib", "petastorm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
