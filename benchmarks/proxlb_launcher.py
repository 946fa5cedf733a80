"""Run ProxLB 2.3.0 unchanged, with its sleeps on the simulator's clock.

Started by the runner inside the benchmark venv:

    .venv-proxlb/bin/python -m benchmarks.proxlb_launcher --speed 30 -- -c proxlb.yaml

ProxLB is exactly what `python3 -m proxlb -c ...` (its systemd unit) runs. The only change is
`time.sleep(s)` -> `time.sleep(s / speed)`: its daemon interval, the 0.1 s pause before each
RRD call and the 5 s pause between migration-task polls then last as long in simulated time as
they would on a real cluster. Its decisions are untouched. This module imports nothing from
the project.
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from typing import SupportsIndex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("proxlb_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    real_sleep = time.sleep
    speed = args.speed

    def scaled_sleep(seconds: float | SupportsIndex) -> None:
        real_sleep(max(0.0, float(seconds)) / speed)

    time.sleep = scaled_sleep
    rest = [a for a in args.proxlb_args if a != "--"]
    sys.argv = ["proxlb", *rest]
    runpy.run_module("proxlb", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
