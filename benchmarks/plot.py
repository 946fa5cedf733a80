"""Per-scenario PNG: node CPU and memory over simulated time for each system, migrations
marked. Runs in the benchmark venv (matplotlib is no project dependency):

    .venv-proxlb/bin/python -m benchmarks.plot plot-input.json out.png

Input: {"scenario", "cpu_max", "memory_max", "runs": [{"label", "nodes", "t", "cpu", "mem",
"events": [{"start", "end", "ok", "kind", "vmid", "source", "target"}]}]}. Up to 8 nodes get
one line each; bigger clusters show the min-max band, the mean and the initially hottest nodes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MOVES = ("qmigrate", "vzmigrate")


def _panel(ax: Any, run: dict[str, Any], key: str, limit: float, colors: list[Any]) -> None:
    t = [x / 60 for x in run["t"]]
    nodes = run["nodes"]
    values = run[key]
    if len(nodes) <= 8:
        for i, name in enumerate(nodes):
            ax.plot(t, [v * 100 for v in values[name]], lw=1.1, color=colors[i % len(colors)],
                    label=name)
    else:
        cols = list(zip(*(values[n] for n in nodes), strict=True))
        lo = [min(c) * 100 for c in cols]
        hi = [max(c) * 100 for c in cols]
        mean = [sum(c) / len(c) * 100 for c in cols]
        ax.fill_between(t, lo, hi, color="0.85", lw=0, label="min-max")
        ax.plot(t, mean, color="0.3", lw=1, label="mean")
        start = run["cpu"]
        hottest = sorted(nodes, key=lambda n: -max(start[n][0], run["mem"][n][0]))[:4]
        for i, name in enumerate(hottest):
            ax.plot(t, [v * 100 for v in values[name]], lw=0.9, color=colors[i % len(colors)],
                    label=name)
    ax.axhline(limit * 100, color="k", ls="--", lw=0.7)
    for e in run["events"]:
        if e["kind"] not in MOVES and e["kind"] != "hamigrate":
            continue
        color = "tab:red" if e["ok"] is False else ("0.55" if e["kind"] == "hamigrate"
                                                    else "tab:green")
        ax.axvline(e["start"] / 60, color=color, lw=0.6, alpha=0.7)
    ax.set_ylim(0, 105)
    ax.tick_params(labelsize=6)
    ax.grid(alpha=0.25, lw=0.4)


def plot(data: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["runs"]
    rows = max(1, len(runs))
    fig, axes = plt.subplots(rows, 2, figsize=(8, 5), dpi=100, sharex=True, squeeze=False)
    colors = list(plt.get_cmap("tab10").colors)
    for r, run in enumerate(runs):
        moves = sum(1 for e in run["events"] if e["kind"] in MOVES)
        failed = sum(1 for e in run["events"] if e["ok"] is False)
        title = f"{run['label']}: {moves} move{'s' if moves != 1 else ''}"
        title += f", {failed} failed" if failed else ""
        for c, (key, limit, what) in enumerate((("cpu", data["cpu_max"], "CPU %"),
                                                 ("mem", data["memory_max"], "memory %"))):
            ax = axes[r][c]
            _panel(ax, run, key, limit, colors)
            ax.set_title(f"{title} - {what}", fontsize=7, loc="left")
            if r == rows - 1:
                ax.set_xlabel("simulated minutes", fontsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), fontsize=6,
               frameon=False)
    fig.suptitle(f"{data['scenario']}: node load (dashed: threshold; vertical lines: "
                 "migrations started - green ok, red failed, grey HA request)", fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    data = json.loads(Path(sys.argv[1]).read_text())
    plot(data, Path(sys.argv[2]))


if __name__ == "__main__":
    main()
