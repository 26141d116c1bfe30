"""The bench agent's command line, light enough to build with every CLI call:
`avfleet bench agent ...` here, `python3 -m avfleet.bench.agent_main ...` on a Xavier
(JetPack 5's Python 3.8; the agent is imported only when it runs)."""

from __future__ import annotations

import argparse

from avfleet.core import storage


def add_arguments(agent: argparse.ArgumentParser) -> None:
    """The agent's command line (`avfleet bench agent`, `python3 -m avfleet.bench.agent_main`)."""
    agent.add_argument("--cache", required=True, help="engine cache on this device")
    # Written out, not made from AgentConfig (avfleet.core.cliopts): the agent runs on JetPack's
    # Python 3.8 with nothing but its own few dependencies; the texts are AgentConfig's.
    agent.add_argument("--host", default="127.0.0.1", help="address to listen on")
    agent.add_argument("--port", type=int, default=8470, help="port to listen on")
    agent.add_argument(
        "--runtime",
        default="onnxruntime",
        choices=["onnxruntime", "tensorrt"],
        help="onnxruntime (CPU) or tensorrt (Jetson / GPU)",
    )
    agent.add_argument(
        "--target",
        default="",
        help="the bench's name for what it runs on, e.g. xavier-agx-jp5; '' = this machine",
    )
    agent.add_argument(
        "--threads", type=int, default=1, help="inference threads (ONNX Runtime intra-op)"
    )
    agent.add_argument(
        "--allow",
        action="append",
        required=True,
        metavar="PREFIX",
        help="a location models and bundles may be read from (repeatable); nothing else is read",
    )
    agent.add_argument("--job-timeout", type=float, default=1800.0, help="seconds a job may run")
    agent.add_argument("--tls-cert", default="", help="PEM certificate: serve HTTPS")
    agent.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")
    storage.add_storage_arguments(agent)


def run(args: argparse.Namespace) -> int:
    """Serve the agent the arguments describe until stopped (token from the environment)."""
    from avfleet.bench.agent import AgentConfig, serve
    from avfleet.bench.client import token_from_env

    server = serve(
        AgentConfig(
            token=token_from_env(),
            cache_uri=args.cache,
            host=args.host,
            port=args.port,
            runtime=args.runtime,
            target=args.target,
            threads=args.threads,
            storage=storage.storage_from_args(args),
            read_prefixes=tuple(args.allow),
            job_timeout_s=args.job_timeout,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
    )
    scheme = "https" if args.tls_cert else "http"
    print(f"bench agent on {scheme}://{args.host}:{args.port} ({args.runtime})", flush=True)
    server.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    from avfleet.bench.client import TOKEN_ENV

    parser = argparse.ArgumentParser(
        prog="python3 -m avfleet.bench.agent_main",
        description=f"serve the bench agent (token from ${TOKEN_ENV})",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
