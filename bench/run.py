"""The benchmark: every figure of the app, each streaming one beside its raw-SDK floor.

    .venv/bin/python -m bench.run [--quick] [--out DIR] [--only streams,db_work,...]

Full mode takes several minutes (N = 1, 100 and 500 concurrent replies, and the capacity search);
``--quick`` (N = 1 and 10, capacity at two points, fewer samples everywhere) is meant to finish
within a minute: `make test` runs it (tests/test_bench.py) to check that every figure comes out. It
prints a table, and writes ``bench.json`` (every figure, its raw floor, the environment) and
``bench.png`` (stop and relay latency against N, app and raw; capacity points) to
``bench/results/`` or ``--out``.

Figures 1-4 (stop latency, cost after stop, relay latency, capacity) come from bench/streams.py;
5-7 from bench/db_work.py, bench/memory.py and bench/page.py; 8 (what prompt caching saves on a
20-turn conversation) from bench/caching.py. Each module's ``measure(quick=)`` runs on its own: a
module that is missing or fails is recorded under its key with the error, and the rest still run.
Targets are shown, not asserted. The exit status is non-zero only when a module failed to produce
its figures (the harness broke), never for a missed target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "bench" / "results"
MODULES = ("streams", "db_work", "memory", "page", "caching")

FIGURE_TITLES = {
    "stop_latency_ms": "1 stop latency (ms)",
    "after_stop_deltas": "2 deltas after stop",
    "relay_latency_ms": "3 relay latency (ms)",
}


def _interrupt(signum: int, _frame: object) -> None:
    # SIGTERM as Ctrl+C: every `finally` then stops its processes and drops its database.
    raise KeyboardInterrupt(f"signal {signum}")


def run_module(name: str, quick: bool) -> dict[str, Any]:
    """One module's figures, or ``{"error": ...}`` (printed too) if it is missing or fails."""
    started = time.monotonic()
    print(f"== {name}: measuring{' (quick)' if quick else ''}…", file=sys.stderr, flush=True)
    try:
        module = importlib.import_module(f"bench.{name}")
        measure = getattr(module, "measure", None)
        if measure is None:
            raise AttributeError(f"bench/{name}.py has no measure(*, quick)")
        result = measure(quick=quick)
        if not isinstance(result, dict):
            raise TypeError(f"bench.{name}.measure returned {type(result).__name__}, not a dict")
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        detail = traceback.format_exc(limit=6)
        print(f"== {name}: FAILED: {type(exc).__name__}: {exc}\n{detail}", file=sys.stderr)
        return {
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": detail,
            "elapsed_s": round(time.monotonic() - started, 1),
        }
    elapsed = round(time.monotonic() - started, 1)
    print(f"== {name}: done in {elapsed} s", file=sys.stderr, flush=True)
    return {**result, "elapsed_s": elapsed}


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _stats(d: dict[str, Any] | None, digits: int = 1) -> list[str]:
    if not d:
        return ["-", "-", "-"]
    return [_fmt(d.get(k), digits) for k in ("p50", "p99", "max")]


HEADER = [
    "figure",
    "N",
    "p50",
    "p99",
    "max",
    "raw p50",
    "raw p99",
    "raw max",
    "app/raw p50",
    "app/raw p99",
    "target",
    "met?",
]


def streams_rows(streams: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    figures = streams.get("figures", {})
    for key, title in FIGURE_TITLES.items():
        digits = 0 if key == "after_stop_deltas" else 1
        for row in figures.get(key, []):
            app = row.get("app")
            raw = row.get("raw")
            ratio = row.get("ratio") or {}
            cells = [title, str(row["n"])]
            cells += _stats(app, digits) if app else ["ERROR: " + row.get("app_error", "?"), "", ""]
            cells += _stats(raw, digits) if raw else ["ERROR: " + row.get("raw_error", "?"), "", ""]
            cells += [_fmt(ratio.get("p50"), 2), _fmt(ratio.get("p99"), 2)]
            met = row.get("met")
            cells += [row.get("target", ""), "n/a" if met is None else _fmt(met)]
            rows.append(cells)
    capacity = streams.get("capacity", {})
    for key, label in (("one_process", "1 daphne"), ("two_processes", "2 daphne + Redis")):
        cap = capacity.get(key)
        if not cap:
            continue
        cells = [f"4 capacity, {label}", cap.get("summary", "-")]
        cells += ["", "", "", "", "", "", "", "", cap.get("criterion", ""), "n/a"]
        rows.append(cells)
    return rows


def generic_rows(name: str, figures: dict[str, Any]) -> list[list[str]]:
    """Rows for another module's figures: every dict with p50/p99/max, every top-level number."""
    rows: list[list[str]] = []

    def walk(path: str, value: Any, depth: int) -> None:
        if isinstance(value, dict):
            if any(k in value for k in ("p50", "p99", "max")):
                rows.append(
                    [
                        f"{name}: {path}",
                        "",
                        *_stats(value),
                        "",
                        "",
                        "",
                        "",
                        "",
                        str(value.get("target", "")),
                        _fmt(value.get("met")) if "met" in value else "",
                    ]
                )
                return
            if depth < 2:
                for k, v in value.items():
                    if k not in ("traceback", "notes", "environment", "env"):
                        walk(f"{path}.{k}" if path else k, v, depth + 1)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            rows.append([f"{name}: {path}", "", _fmt(value, 2), *[""] * 9])
        elif isinstance(value, bool) and path.split(".")[-1] in ("met", "ok"):
            rows.append([f"{name}: {path}", "", _fmt(value), *[""] * 9])

    walk("", figures, 0)
    return rows[:60]


def caching_rows(figures: dict[str, Any]) -> list[list[str]]:
    """Figure 8: the same conversation with prompt caching off and on, its input by kind and
    cost, and what caching saves."""

    def row(title: str, summary: str) -> list[str]:
        return [f"8 prompt caching: {title}", summary, *[""] * 10]

    def usd(value: Any) -> str:
        return "-" if value is None else f"${value:.4f}"

    rows: list[list[str]] = []
    curves: list[str] = []
    for key, label in (("cache_off", "off"), ("cache_on", "on")):
        run = figures.get(key) or {}
        rows.append(
            row(
                f"{label}, input tokens",
                f"{run.get('input_tokens_uncached', 0):,} full + "
                f"{run.get('input_tokens_cache_read', 0):,} read + "
                f"{run.get('input_tokens_cache_write', 0):,} write",
            )
        )
        rows.append(
            row(
                f"{label}, cost",
                f"input {usd(run.get('input_cost_usd'))}, output {usd(run.get('output_cost_usd'))}",
            )
        )
        curve = run.get("per_turn_input_cost_usd") or [None]
        curves.append(f"{label} {usd(curve[0])} → {usd(curve[-1])}")
    rows.append(row(f"input $, turn 1 → {figures.get('turns')}", "; ".join(curves)))
    rows.append(
        row(
            "saving",
            f"input {_fmt(figures.get('input_cost_saving_pct'))} %, "
            f"total {_fmt(figures.get('total_cost_saving_pct'))} % ({figures.get('model')})",
        )
    )
    return rows


def round_notes(streams: dict[str, Any]) -> list[str]:
    """What the table alone does not say about a round: lost replies, saturated processes."""
    notes: list[str] = []
    for rnd in streams.get("rounds", []):
        for side in ("app", "raw"):
            r = rnd.get(side)
            if not isinstance(r, dict):
                continue
            where = f"N={rnd['n']} {side}"
            if "error" in r:
                notes.append(f"{where}: not measured: {r['error']}")
                continue
            if r.get("relay_undelivered"):
                notes.append(
                    f"{where}: {r['relay_undelivered']} deltas of the window had not arrived "
                    "when the round gave up (counted with their latency then: a lower bound)"
                )
            if r.get("not_streaming_in_time"):
                notes.append(
                    f"{where}: {r['not_streaming_in_time']} of {rnd['n']} replies were not "
                    f"streaming {r.get('start_timeout_s')} s after their send (left out)"
                )
            if r.get("ended_before_stop"):
                notes.append(
                    f"{where}: {r['ended_before_stop']} of {rnd['n']} replies ended before the "
                    f"stop (left out of the figures): {r.get('ended_before_stop_example', '')}"
                )
            for text in r.get("error_notices", []):
                notes.append(f"{where}: a socket was told: {text}")
            for proc, cores in (r.get("cpu_cores_used") or {}).items():
                if cores >= 0.9:
                    notes.append(
                        f"{where}: {proc} used {cores} of a core in the window (saturated: "
                        "latencies there are queueing)"
                    )
    return notes


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(HEADER[i]), *(len(r[i]) for r in rows)) for i in range(len(HEADER))]
    widths = [min(w, 60) for w in widths]

    def line(cells: list[str]) -> str:
        return "  ".join(c[:60].ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(HEADER), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# The plot
# --------------------------------------------------------------------------------------------


def plot(streams: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    figures = streams.get("figures", {})
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, key, title in (
        (axes[0], "stop_latency_ms", "Stop latency (stop sent → upstream closed)"),
        (axes[1], "relay_latency_ms", "Relay latency (delta written → frame received)"),
    ):
        rows = figures.get(key, [])
        for side, color in (("app", "tab:red"), ("raw", "tab:blue")):
            pts = [(r["n"], r[side]) for r in rows if r.get(side) and r[side].get("p50")]
            if not pts:
                continue
            ns = [n for n, _ in pts]
            label = "app (daphne)" if side == "app" else "raw SDK floor"
            ax.plot(ns, [s["p50"] for _, s in pts], "o-", color=color, label=f"{label} p50")
            ax.plot(ns, [s["p99"] for _, s in pts], "s--", color=color, label=f"{label} p99")
            ax.plot(
                ns, [s["max"] for _, s in pts], "^:", color=color, alpha=0.5, label=f"{label} max"
            )
        target = 10.0 if key == "stop_latency_ms" else 50.0
        ax.axhline(target, color="green", lw=1, ls="-.", label=f"target p99 {target:.0f} ms")
        ax.set_xscale("log")  # N >= 1
        ax.set_xticks(sorted({r["n"] for r in rows}))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("log")
        ax.set_xlabel("concurrent replies (N)")
        ax.set_ylabel("ms")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    capacity = streams.get("capacity", {})
    for key, color, label in (
        ("one_process", "tab:red", "1 daphne"),
        ("two_processes", "tab:purple", "2 daphne + Redis"),
    ):
        pts = [
            (p["n"], p["relay_ms"]["p99"])
            for p in (capacity.get(key) or {}).get("points", [])
            if p.get("relay_ms") and p["relay_ms"].get("p99") is not None
        ]
        if pts:
            ax.plot([n for n, _ in pts], [v for _, v in pts], "o-", color=color, label=label)
    ax.axhline(100, color="green", lw=1, ls="-.", label="capacity limit: p99 100 ms")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent replies (N), 50 deltas/s each")
    ax.set_ylabel("relay p99 (ms)")
    ax.set_title("Capacity: relay p99 against N", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"stopchat bench — {streams.get('backend', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------


def environment(quick: bool) -> dict[str, Any]:
    env: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    env["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    try:
        with open("/proc/meminfo") as meminfo:
            kb = int(meminfo.readline().split()[1])
        env["memory_gb"] = round(kb / 2**20, 1)
        with open("/proc/cpuinfo") as cpuinfo:
            models = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
        env["cpu_model"] = models[0] if models else platform.processor()
    except (OSError, ValueError, IndexError):
        pass
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write results")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {MODULES}")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    modules = [m for m in args.only.split(",") if m] or list(MODULES)
    unknown = set(modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown module(s): {', '.join(sorted(unknown))}")
    started = time.monotonic()
    report: dict[str, Any] = {"environment": environment(args.quick)}
    try:
        for name in modules:
            report[name] = run_module(name, args.quick)
    except KeyboardInterrupt:
        print("\ninterrupted: every process started has been stopped", file=sys.stderr)
        return 130
    report["environment"]["wall_time_s"] = round(time.monotonic() - started, 1)
    report["environment"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    rows: list[list[str]] = []
    streams = report.get("streams", {})
    if "streams" in report and "error" not in streams:
        rows += streams_rows(streams)
    for name in modules:
        if name == "caching" and "error" not in report[name]:
            rows += caching_rows(report[name])
        elif name != "streams" and "error" not in report[name]:
            rows += generic_rows(name, report[name])
    failed = [name for name in modules if "error" in report[name]]
    for name in failed:
        rows.append([f"{name}: ERROR", "", report[name]["error"], *[""] * 9])
    # A round that produced no figure (its reason is in the table and the notes) fails too.
    failed += [
        f"streams N={r['n']} {side}"
        for r in streams.get("rounds", [])
        for side in ("app", "raw")
        if isinstance(r.get(side), dict) and "error" in r[side]
    ]

    print()
    if rows:
        print(render_table(rows))
    if streams and "error" not in streams:
        print(f"\nbackend: {streams.get('backend')}")
        for note in streams.get("notes", []):
            print(f"note: {note}")
        for line in round_notes(streams):
            print(f"note: {line}")

    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "bench.json"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {json_path}")
    if streams and "error" not in streams:
        try:
            png_path = args.out / "bench.png"
            plot(streams, png_path)
            print(f"wrote {png_path}")
        except Exception as exc:
            print(f"the plot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append("plot")
    print(f"wall time {report['environment']['wall_time_s']} s")
    if failed:
        print(f"harness failures (no figure): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
