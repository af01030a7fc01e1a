"""One of several thingport instances sharing a host's device port, as instances on several hosts share a
database: ``bench/run.py``'s ``topic-pg-2inst`` rows start two of these on one PostgreSQL database,

    python bench/instance.py INDEX --port P --api-port P --data-dir D --database URL

Each is a whole ``thingport serve`` process of its own (its own supervisor-less event loop, stores, leases
and worker id ``INDEX``), not a worker of a ``--workers N`` supervisor; they bind the device port with
SO_REUSEPORT, so one wrk run spreads its connections over both. Instance 0 serves the management API.
"""

import argparse
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-host", default="127.0.0.1")
    parser.add_argument("--api-port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args(argv)

    from thingport.runtime.server import certificate_for, serve_worker
    from thingport.settings import load_settings

    settings = load_settings(host=args.host, port=args.port, api_host=args.api_host, api_port=args.api_port,
                             data_dir=args.data_dir, database_url=args.database, worker_id=args.index)
    serve_worker(settings, certificate_for(settings), args.index)


if __name__ == "__main__":
    main(sys.argv[1:])
