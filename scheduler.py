#!/usr/bin/env python3
"""The publisher daemon: parse arguments, load config, hand over to the pipeline.

    python scheduler.py            run every job on its schedule
    python scheduler.py --once     run every job once (digests included) and exit
    python scheduler.py --serve    also serve feeds and subscriber pages
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from publisher import daemon
from publisher.cli import print_cycle, setup_logging
from publisher.config import load_config
from publisher.errors import PublisherError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config.toml (default ./config.toml or $PUBLISHER_CONFIG)")
    parser.add_argument("--once", action="store_true", help="run every job once and exit")
    parser.add_argument("--serve", action="store_true", help="also start the web server")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    logging.getLogger("publisher").setLevel(logging.INFO)
    try:
        config = load_config(args.config)
        if args.once:
            report = daemon.run_once(config)
            print_cycle(report)
            return 1 if report.errors else 0
        # the first full cycle runs on the elected leader only (see publisher.leader)
        daemon.run_forever(config, serve=args.serve,
                           first_cycle=lambda: print_cycle(daemon.run_once(config)))
    except PublisherError as e:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
