"""What scripts/benchmark prints: the medians per row, each server's resources, and the ratios
next to the targets of issue 24."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from pathlib import Path

from bench.load import cpu_per_k
from bench.servers import Row, Target


def version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    return ((out.stdout or out.stderr).strip().splitlines() or ["?"])[0]


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"node {version(['node', '--version'])}, {version(['wrk', '--version']).split(' [')[0]}, "
        f"{' '.join(version(['redis-server', '--version']).split()[:3])}"
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(rows: list[Row], results: dict[str, list[dict]]) -> dict[str, dict]:
    summary = {}
    for row in rows:
        rounds = results[row.label]
        summary[row.label] = {
            "rps": median([r["rps"] for r in rounds]),
            "rps_rounds": [round(r["rps"]) for r in rounds],
            "cpu_ms_per_1k": median([cpu_per_k([r]) for r in rounds]),
            "redis_ms_per_1k": median([r["redis_cpu"] / r["requests"] * 1e6 for r in rounds]),
            "p50_ms": median([r["p50_us"] / 1000 for r in rounds]),
            "p99_ms": median([r["p99_us"] / 1000 for r in rounds]),
            "requests": sum(r["requests"] for r in rounds),
        }
    return summary


def print_table(rows: list[Row], summary: dict[str, dict]) -> None:
    base = summary.get("node")

    def x(label: str, key: str) -> str:
        return f"{summary[label][key] / base[key]:.2f}" if base else "-"

    print(f"{'row':<19}{'req/s':>8}{'x node':>8}{'CPU ms/1k':>11}{'x node':>8}{'Redis':>7}"
          f"{'p50 ms':>8}{'p99 ms':>8}{'x node':>8}  rounds (req/s)")  # fmt: skip
    for row in rows:
        s = summary[row.label]
        print(
            f"{row.label:<19}{s['rps']:>8.0f}{x(row.label, 'rps'):>8}{s['cpu_ms_per_1k']:>11.0f}"
            f"{x(row.label, 'cpu_ms_per_1k'):>8}{s['redis_ms_per_1k']:>7.0f}{s['p50_ms']:>8.1f}"
            f"{s['p99_ms']:>8.1f}{x(row.label, 'p99_ms'):>8}  {s['rps_rounds']}"
        )
    print("(Redis: CPU ms per 1k requests of the Redis primary and its replica, not in CPU ms/1k)")


def print_resources(servers: list[Target], rss: dict[str, dict]) -> None:
    print(f"\n{'server':<16}{'CPU s':>7}{'RSS MiB':>9}{'per worker':>12}{'start s':>9}"
          f"{'warm-up s':>11}  warm-up slices (CPU ms/1k)")  # fmt: skip
    for target in servers:
        workers = "/".join(f"{w:.0f}" for w in rss[target.name]["workers_mib"])
        warm_s = target.warmup[-1]["at_s"] if target.warmup else 0.0
        slices = [round(cpu_per_k([s])) for s in target.warmup]
        print(
            f"{target.name:<16}{target.cpu_used:>7.1f}{rss[target.name]['total_mib']:>9.0f}"
            f"{workers:>12}{target.start_seconds:>9.2f}{warm_s:>11.1f}  {slices}"
        )


# (row, compared with, at least this throughput ratio, at most this p99 ratio, why).
RATIOS = [
    ("server-1w", "node", 0.32, 2.0, "default image, 1 worker"),
    ("server-2w", "node", 0.50, 2.0, "default image, 2 workers"),
    ("pypy-1w", "node", 0.40, 1.5, "PyPy image, 1 worker"),
    ("pypy-2w", "node", 0.70, 1.5, "PyPy image, 2 workers"),
    ("server-1w", "flask-1w", None, None, "the stack's ceiling, same settings"),
    ("server-2w", "flask-2w", None, None, "the stack's ceiling, same settings"),
    ("pypy-1w", "server-1w", None, None, "PyPy against the default image"),
    ("pypy-2w", "server-2w", None, None, "PyPy against the default image"),
    ("server-1w+key", "server-1w", None, None, "the counter's real request: a fresh key"),
    ("server-2w+key", "server-2w", None, None, "the counter's real request: a fresh key"),
    ("server-1w-wait+key", "server-1w+key", None, None, "acknowledged once the replica has it"),
]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def ratio_lines(summary: dict[str, dict], variants: list[Target]) -> list[str]:
    """RATIOS, then each --variant against the default image's row of as many workers."""
    compared = [
        (v.name, "server-2w" if v.settings.get("WEB_CONCURRENCY") == "2" else "server-1w",
         None, None, "a --variant against the default image")
        for v in variants
    ]  # fmt: skip
    lines = []
    for a, b, least, most, why in RATIOS + compared:
        if a not in summary or b not in summary:
            continue
        rps = summary[a]["rps"] / summary[b]["rps"]
        p99 = summary[a]["p99_ms"] / summary[b]["p99_ms"]
        cpu = summary[a]["cpu_ms_per_1k"] / summary[b]["cpu_ms_per_1k"]
        target = ""
        if least is not None:
            met = rps >= least and p99 <= most
            target = f"target >= {least:.2f}x, p99 <= {most:g}x: {verdict(met)}; "
        lines.append(f"{a + ' / ' + b:<35} throughput {rps:.2f}x  p99 {p99:.2f}x  "
                     f"CPU/request {cpu:.2f}x   ({target}{why})")  # fmt: skip
    return lines


def limit_lines(rss: dict[str, dict], support: dict[str, float], starts: dict) -> list[str]:
    """The issue's memory and start targets, for what this run measured."""
    lines = []
    for name in ("pypy-1w", "pypy-2w"):
        if name in rss:
            worst = max(rss[name]["workers_mib"])
            met = verdict(worst <= 450)
            lines.append(f"{name} RSS per worker {worst:.0f} MiB after the rounds "
                         f"(target <= 450 MiB after 5 minutes of load, --soak: {met})")  # fmt: skip
    for name, mib in support.items():
        lines.append(f"{name} RSS {mib:.1f} MiB after ~10 s against server-1w "
                     f"(target <= 30 MiB: {verdict(mib <= 30)})")  # fmt: skip
    for image, times in starts.items():
        cpython = "pypy" not in image
        note = f"target < 1 s: {verdict(median(times) < 1)}" if cpython else "no target"
        lines.append(f"{image} start to ready median {median(times):.2f} s "
                     f"({', '.join(f'{s:.2f}' for s in times)}; {note})")  # fmt: skip
    return lines
