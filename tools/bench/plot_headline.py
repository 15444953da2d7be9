#!/usr/bin/env python3
"""Plots the headline benchmark: the local cluster beside PostgreSQL.

    persist-bench headline --json headline.json
    tools/bench/plot_headline.py headline.json [-o docs/headline.png]

Reads the JSON that `persist-bench headline --json PATH` writes and draws two panels
over the client counts (categorical x axis): commits per second of both systems, with
the cluster/PostgreSQL ratio above each pair, and their p99 commit latency as bars (p50
as a tick, log scale). Writes a PNG (default docs/headline.png in the repository).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = REPO / "docs" / "headline.png"
CLUSTER_COLOR = "#1f77b4"
POSTGRES_COLOR = "#7f7f7f"


class FiguresError(Exception):
    """The JSON is not what persist-bench headline writes."""


def load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise FiguresError(f"cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise FiguresError(f"{path} is not JSON: {e}") from None
    if data.get("bench") != "headline" or not data.get("levels"):
        raise FiguresError(f"{path} holds no headline figures (bench={data.get('bench')!r})")
    return data


def series(data: dict) -> dict[str, list]:
    """Per level, in the order run: clients, commits/s and latencies in ms of both sides."""
    out: dict[str, list] = {k: [] for k in (
        "clients", "cluster_rate", "pg_rate", "cluster_p50", "cluster_p99", "pg_p50", "pg_p99", "ratio")}
    try:
        for level in data["levels"]:
            cluster, pg = level["cluster"], level["postgres"]
            out["clients"].append(int(level["clients"]))
            out["cluster_rate"].append(float(cluster["commitsPerSecond"]))
            out["pg_rate"].append(float(pg["commitsPerSecond"]))
            # The JSON carries latencies in microseconds.
            out["cluster_p50"].append(cluster["latency"]["p50"] / 1000)
            out["cluster_p99"].append(cluster["latency"]["p99"] / 1000)
            out["pg_p50"].append(pg["latency"]["p50"] / 1000)
            out["pg_p99"].append(pg["latency"]["p99"] / 1000)
            out["ratio"].append(level.get("clusterOverPostgres"))
    except (KeyError, TypeError, ValueError) as e:
        raise FiguresError(f"a level lacks a figure: {e!r}") from None
    return out


def plot(data: dict, output: Path) -> None:
    s = series(data)
    positions = list(range(len(s["clients"])))
    labels = [str(c) for c in s["clients"]]
    width = 0.38
    # "15.18 (Debian 15.18-0+deb12u1)" -> "15.18"
    version = str(data.get("postgresVersion", "")).split(" ")[0]
    pg_label = f"PostgreSQL {version}".strip()
    left = [p - width / 2 for p in positions]
    right = [p + width / 2 for p in positions]

    fig, (rates, latency) = plt.subplots(1, 2, figsize=(11, 5))

    rates.bar(left, s["cluster_rate"], width, label="cluster", color=CLUSTER_COLOR)
    rates.bar(right, s["pg_rate"], width, label=pg_label, color=POSTGRES_COLOR)
    for p, c, g, r in zip(positions, s["cluster_rate"], s["pg_rate"], s["ratio"]):
        if r is not None:
            rates.annotate(f"cluster/PG {r:.2f}x", (p, max(c, g)), xytext=(0, 5), textcoords="offset points",
                           ha="center", fontsize=9)
    rates.set_ylim(0, max(s["cluster_rate"] + s["pg_rate"] + [1.0]) * 1.15)
    rates.set_title("commits per second (higher is better)")
    rates.set_ylabel("commits/s")

    latency.bar(left, s["cluster_p99"], width, color=CLUSTER_COLOR)
    latency.bar(right, s["pg_p99"], width, color=POSTGRES_COLOR)
    latency.scatter(left + right, s["cluster_p50"] + s["pg_p50"], marker="_", s=300, linewidths=2,
                    color="black", zorder=3, label="p50")
    latency.set_yscale("log")
    latency.set_title("commit latency: bars p99, ticks p50 (lower is better)")
    latency.set_ylabel("ms (log scale)")

    for ax in (rates, latency):
        ax.set_xticks(positions, labels)
        ax.set_xlabel("concurrent clients")
        ax.grid(axis="y", alpha=0.3)
    handles = rates.get_legend_handles_labels()[0] + latency.get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)

    load = data.get("load", {})
    fig.suptitle(
        f"Multi-shard transactions: {load.get('rowsPerShardPerTxn', '?')} rows x {load.get('valueBytes', '?')} B "
        f"on each of {load.get('dataShards', '?')} shards per commit; {load.get('durationSeconds', '?')} s per level, "
        f"{data.get('cpus', '?')} CPUs")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Plot persist-bench headline figures.")
    parser.add_argument("figures", type=Path, help="JSON written by persist-bench headline --json")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"PNG to write (default {DEFAULT_OUTPUT.relative_to(REPO)})")
    args = parser.parse_args(argv)
    try:
        plot(load(args.figures), args.output)
    except FiguresError as e:
        print(f"plot_headline: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
