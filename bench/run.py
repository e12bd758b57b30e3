"""The benchmark: every figure of the app, each streaming one beside its raw-SDK floor.

    .venv/bin/python -m bench.run [--quick] [--out DIR] [--only streams,db_work,...]
                                  [--setups sqlite,postgres]

Full mode takes several minutes: the streaming figures on two setups, SQLite as `make run` gives
it and PostgreSQL + Redis (when both answer on 127.0.0.1), each at N = 1, 100 and 500 concurrent
replies, with its capacity search and its overload round. ``--quick`` (SQLite only, N = 1 and
10, capacity at two points, an overload at a fixed capacity of 10, fewer samples everywhere) is
meant to finish within a minute: `make test` runs it (tests/test_bench.py) to check that every
figure comes out. It prints a table, and writes ``bench.json`` (every figure, its raw floor, the
environment) and ``bench.png`` (stop latency and relay lag against N, app per setup and raw;
capacity points) to ``bench/results/`` or ``--out``.

Figures 1-4 (stop latency, every reply at once and one amid N; deltas after a stop; relay lag at
the pages; capacity and the overload round) come from bench/streams.py; 5-7 from
bench/db_work.py, bench/memory.py and bench/page.py; 8 (what prompt caching saves on a 20-turn
conversation) from bench/caching.py; 9 (the server's memory for an upload of about 10 MB, by
the page and by the API) from bench/attachments.py. Each module's ``measure(quick=)`` runs on its
own: a module that is missing or fails is recorded under its key with the error, and the rest
still run.
Targets are shown, not asserted. The exit status is non-zero only when a module, a streaming
setup or round, or the overload round failed to produce its figures (the harness broke), never
for a missed target.
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
MODULES = ("streams", "db_work", "memory", "page", "caching", "attachments")

FIGURE_TITLES = {
    "stop_latency_ms": "1 stop latency, all N at once (ms)",
    "single_stop_ms": "1b stop latency, one amid N (ms)",
    "after_stop_deltas": "2 deltas after stop, all at once",
    "single_stop_after_deltas": "2b deltas after one stop amid N",
    "relay_latency_ms": "3 relay lag at the pages (ms)",
}


def _interrupt(signum: int, _frame: object) -> None:
    # SIGTERM as Ctrl+C: every `finally` then stops its processes and drops its database.
    raise KeyboardInterrupt(f"signal {signum}")


def run_module(name: str, quick: bool, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """One module's figures, or ``{"error": ...}`` (printed too) if it is missing or fails."""
    started = time.monotonic()
    print(f"== {name}: measuring{' (quick)' if quick else ''}…", file=sys.stderr, flush=True)
    try:
        module = importlib.import_module(f"bench.{name}")
        measure = getattr(module, "measure", None)
        if measure is None:
            raise AttributeError(f"bench/{name}.py has no measure(*, quick)")
        result = measure(quick=quick, **(options or {}))
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


STATS = ("p50", "p90", "p99", "max")


def _stats(d: dict[str, Any] | None, digits: int = 1) -> list[str]:
    if not d:
        return ["-"] * len(STATS)
    return [_fmt(d.get(k), digits) for k in STATS]


HEADER = [
    "figure",
    "setup",
    "N",
    "p50",
    "p90",
    "p99",
    "max",
    "raw p50",
    "raw p90",
    "raw p99",
    "raw max",
    "app/raw p50",
    "app/raw p99",
    "target",
    "met?",
]


def _words(figure: str, setup: str, text: str) -> list[str]:
    """A row of words rather than numbers: the text runs on after the figure and setup."""
    return [figure, setup, text]


def _ratio(app: dict[str, Any], raw: dict[str, Any], key: str) -> float | None:
    a, r = app.get(key), raw.get(key)
    return round(a / r, 2) if a is not None and r else None


def _numbers(
    figure: str,
    setup: str,
    n: Any,
    app: dict[str, Any] | None,
    raw: dict[str, Any] | None,
    *,
    digits: int = 1,
    app_error: str = "",
    raw_error: str = "",
    target: str = "",
    met: bool | None = None,
) -> list[str]:
    """A row of statistics: the app's, the raw floor's beside them, their ratio, the target."""
    cells = [figure, setup, str(n)]
    cells += _stats(app, digits) if app else ["ERROR: " + (app_error or "?"), "", "", ""]
    if raw:
        cells += _stats(raw, digits)
    else:
        cells += ["-", "", "", ""] if not raw_error else ["ERROR: " + raw_error, "", "", ""]
    for key in ("p50", "p99"):
        cells.append(_fmt(_ratio(app, raw, key), 2) if app and raw else "-")
    cells += [target, "n/a" if met is None else _fmt(met)]
    return cells


def streams_rows(streams: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    figures = streams.get("figures", {})
    for key, title in FIGURE_TITLES.items():
        digits = 0 if key.endswith("_deltas") else 1
        for row in figures.get(key, []):
            rows.append(
                _numbers(
                    title,
                    row.get("setup", ""),
                    row["n"],
                    row.get("app"),
                    row.get("raw"),
                    digits=digits,
                    app_error=row.get("app_error", ""),
                    raw_error=row.get("raw_error", ""),
                    target=row.get("target", ""),
                    met=row.get("met"),
                )
            )
    for setup, info in streams.get("setups", {}).items():
        for why in ("skipped", "error"):
            if info.get(why):
                rows.append(_words("1-4 streaming figures", setup, f"{why}: {info[why]}"))
    for setup, capacity in streams.get("capacity", {}).items():
        for key, label in (("one_process", "1 daphne"), ("two_processes", "2 daphne + Redis")):
            cap = capacity.get(key)
            if cap:
                text = f"{cap.get('summary', '-')}; criterion: {cap.get('criterion', '')}"
                rows.append(_words(f"4 capacity, {label}", setup, text))
    for setup, over in streams.get("overload", {}).items():
        rows += overload_rows(setup, over)
    return rows


def overload_rows(setup: str, over: dict[str, Any]) -> list[list[str]]:
    """The overload round: its turns (accepted; refused, told so, nothing saved), the checks,
    then the accepted replies' figures beside the raw floor at as many streams."""
    title = "4b overload"
    if "error" in over:
        return [_words(title, setup, f"ERROR: {over['error']}")]
    if "skipped" in over:
        return [_words(title, setup, str(over["skipped"]))]
    rows = [_words(f"{title}: turns", setup, over.get("summary", "-"))]
    checks: dict[str, bool] = over.get("checks", {})
    missed = [name for name, ok in checks.items() if not ok]
    if not over.get("refusals_supported"):
        verdict = "not met: no refusals"
    elif missed:
        verdict = "NOT met: " + "; ".join(missed)
    else:
        verdict = "met: " + "; ".join(checks)
    rows.append(_words(f"{title}: checks", setup, verdict))
    app, raw = over.get("app", {}), over.get("raw", {})
    raw_error = raw.get("error", "")
    n = f"{over.get('accepted')} of {over.get('offered')}"
    for key, label, digits in (
        ("single_stop_ms", "stop, one amid N (ms)", 1),
        ("single_stop_after_deltas", "deltas after one stop", 0),
        ("stop_ms", "stop, all at once (ms)", 1),
        ("relay_ms", "relay lag (ms)", 1),
    ):
        target, met = "", None
        if key == "single_stop_ms":
            target = over.get("stop_target", "")
            met = checks.get(target) if over.get("refusals_supported") else False
        rows.append(
            _numbers(
                f"{title}: {label}",
                setup,
                n,
                app.get(key),
                None if raw_error else raw.get(key),
                digits=digits,
                raw_error=raw_error,
                target=target,
                met=met,
            )
        )
    return rows


def generic_rows(name: str, figures: dict[str, Any]) -> list[list[str]]:
    """Rows for another module's figures: every dict with p50/p99/max, every top-level number."""
    rows: list[list[str]] = []

    def walk(path: str, value: Any, depth: int) -> None:
        if isinstance(value, dict):
            if any(k in value for k in ("p50", "p99", "max")):
                cells = [f"{name}: {path}", "", "", *_stats(value), *[""] * 6]
                cells += [str(value.get("target", "")), _fmt(value.get("met"))]
                rows.append(cells if "met" in value else [*cells[:-1], ""])
                return
            if depth < 2:
                for k, v in value.items():
                    if k not in ("traceback", "notes", "environment", "env"):
                        walk(f"{path}.{k}" if path else k, v, depth + 1)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            rows.append(_words(f"{name}: {path}", "", _fmt(value, 2)))
        elif isinstance(value, bool) and path.split(".")[-1] in ("met", "ok"):
            rows.append(_words(f"{name}: {path}", "", _fmt(value)))

    walk("", figures, 0)
    return rows[:60]


def caching_rows(figures: dict[str, Any]) -> list[list[str]]:
    """Figure 8: the same conversation with prompt caching off and on, its input by kind and
    cost, and what caching saves."""

    def row(title: str, summary: str) -> list[str]:
        return _words(f"8 prompt caching: {title}", "", summary)

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
    """What the table alone does not say about a round: lost replies, refusals, saturated
    processes."""
    notes: list[str] = []
    entries: list[tuple[str, Any, str, Any]] = [
        (r.get("setup", ""), r["n"], "app", r.get("app")) for r in streams.get("rounds", [])
    ]
    entries += [("", r["n"], "raw", r) for r in streams.get("raw_rounds", [])]
    for setup, over in streams.get("overload", {}).items():
        if isinstance(over.get("app"), dict):
            entries.append((setup, over.get("offered"), "overload", over["app"]))
    for setup, n, side, r in entries:
        if not isinstance(r, dict):
            continue
        where = f"{setup + ' ' if setup else ''}N={n} {side}"
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
                f"{where}: {r['not_streaming_in_time']} of {n} replies were not "
                f"streaming {r.get('start_timeout_s')} s after their send (left out)"
            )
        if r.get("refused") and side != "overload":
            notes.append(f"{where}: {r['refused']} of {n} turns refused (left out)")
        if r.get("ended_before_stop"):
            notes.append(
                f"{where}: {r['ended_before_stop']} of {n} replies ended before the "
                f"stop (left out of the figures): {r.get('ended_before_stop_example', '')}"
            )
        if r.get("ended_before_their_stop"):
            notes.append(
                f"{where}: {r['ended_before_their_stop']} replies had ended on their own (the "
                "fake's whole reply written) before their stop was sent (left out)"
            )
        if r.get("restarts_refused") or r.get("restarts_not_streaming_at_burst"):
            notes.append(
                f"{where}: of the {r.get('single_stops_restarted')} replies restarted after a "
                f"single stop, {r.get('restarts_refused', 0)} were refused and "
                f"{r.get('restarts_not_streaming_at_burst', 0)} not streaming at the burst "
                "(left out of it)"
            )
        for key, what in (("stop_not_closed", "stops"), ("single_stop_not_closed", "single stops")):
            if r.get(key):
                notes.append(f"{where}: {r[key]} {what} never saw their upstream closed")
        if r.get("finals_error"):
            notes.append(f"{where}: {r['finals_error']}")
        if side != "overload":
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
    """Aligned columns; a row of words (``_words``) runs on after the figure and setup columns
    without widening the others."""
    full = [r for r in rows if len(r) == len(HEADER)]
    widths = [max([len(HEADER[i])] + [len(r[i]) for r in full]) for i in range(len(HEADER))]
    for i in (0, 1):
        widths[i] = max([widths[i]] + [len(r[i]) for r in rows])
    widths = [min(w, 60) for w in widths]

    def line(cells: list[str]) -> str:
        if len(cells) != len(HEADER):
            head = "  ".join(c[:60].ljust(w) for c, w in zip(cells[:2], widths[:2], strict=True))
            return f"{head}  {' '.join(cells[2:])}".rstrip()
        return "  ".join(c[:60].ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(HEADER), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# The plot
# --------------------------------------------------------------------------------------------

SETUP_COLORS = {"sqlite": "tab:red", "postgres": "tab:orange"}


def plot(streams: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    figures = streams.get("figures", {})
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))

    def by_n(rows: list[dict[str, Any]], side: str, stat: str, setup: str | None = None) -> Any:
        points = {
            r["n"]: r[side][stat]
            for r in rows
            if (setup is None or r.get("setup") == setup)
            and r.get(side)
            and r[side].get(stat) is not None
        }
        return sorted(points), [points[n] for n in sorted(points)]

    setups = list(streams.get("setups", {}))
    panels = (
        (
            axes[0],
            "Stop latency p99 (stop sent → upstream closed)",
            (("stop_latency_ms", "all at once", "o-"), ("single_stop_ms", "one amid N", "s--")),
            "p99",
            60.0,
            "target p99 60 ms (one amid 100)",
        ),
        (
            axes[1],
            "Relay lag at the pages (delta written → frame received)",
            (("relay_latency_ms", "p90", "o-"), ("relay_latency_ms", "p99", "s--")),
            "",
            300.0,
            "target p90 300 ms at N=100",
        ),
    )
    for ax, title, series, fixed_stat, target, target_label in panels:
        ns: set[int] = set()
        for key, label, style in series:
            stat = fixed_stat or label
            rows = figures.get(key, [])
            for setup in setups:
                xs, ys = by_n(rows, "app", stat, setup)
                if xs:
                    color = SETUP_COLORS.get(setup, "tab:gray")
                    ax.plot(xs, ys, style, color=color, label=f"app, {setup}: {label}")
                    ns.update(xs)
            xs, ys = by_n(rows, "raw", stat, setups[0] if setups else None)
            if xs:
                ax.plot(xs, ys, style, color="tab:blue", label=f"raw SDK floor: {label}")
                ns.update(xs)
        ax.axhline(target, color="green", lw=1, ls="-.", label=target_label)
        ax.set_xscale("log")  # N >= 1
        if ns:
            ax.set_xticks(sorted(ns))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("log")
        ax.set_xlabel("concurrent replies (N)")
        ax.set_ylabel("ms")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    for setup, capacity in streams.get("capacity", {}).items():
        for key, style, label in (
            ("one_process", "o-", "1 daphne"),
            ("two_processes", "s--", "2 daphne + Redis"),
        ):
            pts = [
                (p["n"], p["relay_ms"]["p99"])
                for p in (capacity.get(key) or {}).get("points", [])
                if p.get("relay_ms") and p["relay_ms"].get("p99") is not None
            ]
            if pts:
                color = SETUP_COLORS.get(setup, "tab:gray")
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, style, color=color, label=f"{setup}, {label}")
    ax.axhline(100, color="green", lw=1, ls="-.", label="capacity limit: p99 100 ms")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent replies (N), 50 deltas/s each")
    ax.set_ylabel("relay p99 (ms)")
    ax.set_title("Capacity: relay p99 against N", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"stopchat bench — {streams.get('backend', '')}", fontsize=9)
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


def harness_failures(streams: dict[str, Any]) -> list[str]:
    """Streaming figures that did not come out (their reasons are in the table and the notes):
    a setup that failed, a round with no figure, an overload round that broke."""
    failed = [f"streams {name}" for name, s in streams.get("setups", {}).items() if "error" in s]
    failed += [
        f"streams {r.get('setup', '')} N={r['n']} app".replace("  ", " ")
        for r in streams.get("rounds", [])
        if isinstance(r.get("app"), dict) and "error" in r["app"]
    ]
    failed += [f"streams N={r['n']} raw" for r in streams.get("raw_rounds", []) if "error" in r]
    failed += [
        f"streams {name} overload"
        for name, over in streams.get("overload", {}).items()
        if "error" in over or "error" in over.get("raw", {})
    ]
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write results")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {MODULES}")
    parser.add_argument(
        "--setups",
        default="",
        help="the streaming figures' setups, comma-separated: sqlite, postgres (default: both "
        "in full mode, sqlite with --quick)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    modules = [m for m in args.only.split(",") if m] or list(MODULES)
    unknown = set(modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown module(s): {', '.join(sorted(unknown))}")
    setups = [s for s in args.setups.split(",") if s]
    if set(setups) - {"sqlite", "postgres"}:
        parser.error(f"unknown setup(s) in {args.setups!r}: sqlite, postgres")
    started = time.monotonic()
    report: dict[str, Any] = {"environment": environment(args.quick)}
    try:
        for name in modules:
            options = {"setups": setups} if name == "streams" and setups else None
            report[name] = run_module(name, args.quick, options)
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
        rows.append(_words(f"{name}: ERROR", "", report[name]["error"]))
    if "error" not in streams:
        failed += harness_failures(streams)

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
