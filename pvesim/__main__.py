"""`python -m pvesim --scenario FILE --port N`: serve a simulated cluster until SIGINT/SIGTERM.

Prints exactly one line to stdout once it accepts connections (never the token secret):
`pvesim ready https://127.0.0.1:PORT user=USER token_name=NAME`
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from pvesim.scenario import ScenarioError, load_scenario
from pvesim.simulator import Simulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pvesim", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", required=True, help="scenario file (.yaml/.yml/.json)")
    parser.add_argument("--port", type=int, required=True, help="TCP port (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    parser.add_argument("--seed", type=int, default=0, help="seed for all randomness")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.speed <= 0:
        print("pvesim: --speed must be positive", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"pvesim: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = Simulator(scenario, speed=args.speed, seed=args.seed)
    try:
        server = sim.serve(host=args.host, port=args.port)
    except OSError as exc:
        print(f"pvesim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    auth = sim.auth
    print(f"pvesim ready {server.url} user={auth.user} token_name={auth.token_name}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
