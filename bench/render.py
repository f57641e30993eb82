"""Render docs/benchmarks.md (tables) and docs/img/bench_*.png (charts) from bench/results/*.json.

    python bench/render.py [--results bench/results] [--out docs/benchmarks.md]

Nothing here measures: every number comes from the JSON the benchmarks wrote, with the command and
time that produced it, so the page can be regenerated after any run and never drifts from the data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BENCHMARKS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HIDDEN = {"kind", "samples", "extra_samples"}
METHOD_COLOURS = {"harbour": "#1f77b4", "rsync": "#ff7f0e", "json_http": "#2ca02c", "flight": "#9467bd",
                  "flight_zstd": "#8c564b", "harbour_incl_seal": "#aec7e8"}


CAVEATS = [
    "Everything runs on one shared 2-core machine: sender, proxy, receiver and the hub's merger compete for CPU. "
    "Medians of 3 runs (1 with `--quick`); compare ratios within a run, not absolute figures across runs.",
    "The link proxy (scenarios/link_proxy.py) delays bytes in a queue of 64 reads of up to 16 KiB per connection "
    "and direction, so one TCP connection carries at most ~1 MiB per one-way delay: ~28 Mbit/s at 600 ms RTT. "
    "At 100 Mbit/s with 600 ms RTT this caps the single-connection peers (rsync, JSON/HTTP) far below the "
    "0.62 / 0.23 of research/rsync-http-baselines.md, whose proxy had no such cap; Harbour, with several "
    "uploads in flight, is not capped the same way. Inferred from the numbers, not measured separately.",
    "Harbour's sync agent runs inside the bench process (the real SyncAgent, transport and uploader, with the "
    "CLI's --max-in-flight default), not as `harbour edge run`; ingest and sealing are measured separately.",
    "The JSON/HTTP peer reuses a pool of a few encoded gzip JSON files (Python's json.dumps encodes ~30-60k "
    "rows/s here, see `formats`: too slow to encode millions of rows per run, and too slow to feed "
    "100 Mbit/s live).",
    "The 100,000-segment backlog is built by writing ledger rows through SegmentLedger.record_sealed "
    "(synchronous=OFF, no segment files), not by ingesting rows.",
    "rsync's cost of a clean cut comes out negative: after the cut, rsync's delta transfer matches blocks of "
    "the kept partial file anywhere in the new file, and Harbour's segments repeat whole pages (pyarrow "
    "dictionary-encodes even all-distinct columns, whose index pages 0, 1, 2, ... are identical across columns "
    "and row groups; see research/rsync-http-baselines.md). Harbour's own segments carry that waste too: the "
    "same telemetry rows without dictionaries on the distinct columns are ~23 B/row instead of 33 (measured "
    "once by hand, not by this suite).",
    "A silent stall is modelled as a connection that stops forwarding with TCP back-pressure (no ACKs); "
    "rsync's --timeout does not fire on it, so the bench kills rsync after a watchdog period.",
    "The downlink's goodput is timed at the proxy from the first to the last body byte of the download: the edge's "
    "start-up and the report that tells it of the version (every 30 s by default) come before and are not counted. "
    "Its bytes per cut count what the proxy forwarded toward the ship; bytes the hub had sent that were still "
    "queued in the proxy when it cut never crossed the link and are not counted.",
]


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e5:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.3g}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def table(figures: list[dict]) -> list[str]:
    columns: list[str] = []
    for figure in figures:
        columns += [k for k, v in figure.items() if k not in HIDDEN and k not in columns and not isinstance(v, list)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(f.get(c, "")) for c in columns) + " |" for f in figures]
    return lines


def by_kind(document: dict) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for figure in document["figures"]:
        groups.setdefault(figure.get("kind", "figures"), []).append(figure)
    return groups


# -- charts ------------------------------------------------------------------------------------------

def _bars(path: Path, groups: list[str], series: dict[str, list[float]], ylabel: str, title: str, *,
          log: bool = False, hline: float | None = None) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        xs = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, values, width, label=name, color=METHOD_COLOURS.get(name))
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    if hline is not None:
        ax.axhline(hline, color="grey", linewidth=0.8, linestyle="--")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def chart(name: str, document: dict, img_dir: Path) -> Path | None:
    kinds = by_kind(document)
    path = img_dir / f"bench_{name}.png"
    if name == "link" and "goodput" in kinds:
        figures = kinds["goodput"]
        links = list(dict.fromkeys(f"{f['link_mbit']:g} Mbit/s\n{f['rtt_ms']} ms RTT" for f in figures))
        series: dict[str, list[float]] = {}
        for f in figures:
            series.setdefault(f["method"], []).append(f["goodput_fraction"])
        _bars(path, links, series, "goodput (payload bytes / link rate)", "Goodput through the link proxy", hline=1.0)
    elif name == "formats" and "format" in kinds:
        figures = kinds["format"]
        datasets = list(dict.fromkeys(f["dataset"] for f in figures))
        series = {}
        for f in figures:
            series.setdefault(f["encoding"], []).append(f["bytes_per_row"])
        _bars(path, datasets, series, "bytes per row (log)", "Bytes per row by encoding", log=True)
    elif name == "faults" and "fault" in kinds:
        figures = [f for f in kinds["fault"] if f["fault"] != "none"]
        faults = list(dict.fromkeys(f["fault"] for f in figures))
        series = {}
        for f in figures:
            series.setdefault(f["method"], []).append(max(f["extra_bytes"], 1))
        _bars(path, faults, series, "extra bytes on the wire (log; <=0 shown as 1)", "Cost of one fault", log=True)
    elif name == "loopback" and "loopback" in kinds:
        figures = kinds["loopback"]
        _bars(path, ["loopback"], {f["method"]: [f["rows_per_s"] / 1e6] for f in figures}, "M rows/s",
              "Loopback rows/s: Harbour vs Arrow Flight")
    elif name == "edge_ingest" and "ingest" in kinds:
        figures = kinds["ingest"]
        groups = [f"{f['dataset']}\n{f['writers']} writer(s)" for f in figures]
        _bars(path, groups, {"edge (durable)": [f["rows_per_s"] / 1e6 for f in figures],
                             "IPC + fsync baseline": [f["baseline_rows_per_s"] / 1e6 for f in figures]},
              "M rows/s", "Edge ingest vs pyarrow IPC + fsync")
    elif name == "hub_merge" and "merge" in kinds:
        figures = kinds["merge"]
        groups = [f"{f['sites']} site(s)" for f in figures]
        _bars(path, groups, {"hub": [f["rows_per_s"] / 1e6 for f in figures],
                             "write_deltalake per segment": [f["plain_per_segment_rows_per_s"] / 1e6 for f in figures],
                             "write_deltalake one append": [f["plain_one_append_rows_per_s"] / 1e6 for f in figures]},
              "M rows/s", "Hub merge vs plain write_deltalake")
    else:
        return None
    return path


# -- the summary: the figures the project is judged on ------------------------------------------------

def _find(documents: dict, name: str, kind: str, **match: Any) -> dict | None:
    for figure in documents.get(name, {}).get("figures", []):
        if figure.get("kind") == kind and all(figure.get(k) == v for k, v in match.items()):
            return figure
    return None


def summary(documents: dict) -> list[str]:
    rows: list[tuple[str, str, str, str]] = []

    def add(what: str, harbour: str, baseline: str, ratio: str) -> None:
        rows.append((what, harbour, baseline, ratio))

    for dataset in ("telemetry", "sales"):
        f = _find(documents, "edge_ingest", "ingest", dataset=dataset, writers=16)
        if f:
            add(f"durable edge ingest, {dataset}, 16 writers (rows/s)", fmt(f["rows_per_s"]),
                f"pyarrow IPC + fsync {fmt(f['baseline_rows_per_s'])}", fmt(f["ratio_to_baseline"]))
    raw = _find(documents, "formats", "format", dataset="telemetry", encoding="raw_arrow_ipc")
    for encoding, label in (("default_parquet", "rsync of default pyarrow Parquet"), ("json_gzip", "JSON + gzip"),
                            ("arrow_ipc_zstd", "Arrow IPC zstd (Flight zstd)")):
        for dataset in ("telemetry", "sales"):
            mine = _find(documents, "formats", "format", dataset=dataset, encoding="harbour_segment")
            other = _find(documents, "formats", "format", dataset=dataset, encoding=encoding)
            if mine and other:
                add(f"payload bytes/row, {dataset}", fmt(mine["bytes_per_row"]),
                    f"{label} {fmt(other['bytes_per_row'])}", fmt(mine["bytes_per_row"] / other["bytes_per_row"]))
    if raw:
        for method in ("harbour", "rsync", "json_http"):
            f = _find(documents, "link", "wire", method=method)
            if f:
                add(f"wire bytes/row, telemetry, {method} (both directions)", fmt(f["wire_bytes_per_row"]),
                    f"raw Arrow {fmt(f['raw_arrow_bytes_per_row'])}", fmt(f["wire_to_raw_arrow"]))
    for figure in documents.get("link", {}).get("figures", []):
        if figure.get("kind") == "goodput" and figure["method"] == "harbour":
            link = f"{figure['link_mbit']:g} Mbit/s, {figure['rtt_ms']} ms RTT"
            peers = [_find(documents, "link", "goodput", link_mbit=figure["link_mbit"], rtt_ms=figure["rtt_ms"],
                           method=m) for m in ("rsync", "json_http")]
            text = "; ".join(f"{p['method']} {fmt(p['goodput_fraction'])}" for p in peers if p)
            add(f"goodput fraction, {link}", fmt(figure["goodput_fraction"]), f"link rate 1.0 ({text})",
                fmt(figure["goodput_fraction"]))
    for fault in ("cut", "stall"):
        mine = _find(documents, "faults", "fault", method="harbour", fault=fault)
        other = _find(documents, "faults", "fault", method="rsync", fault=fault)
        if mine and other:
            add(f"extra bytes, one {'clean cut' if fault == 'cut' else 'silent stall'} (extra seconds)",
                f"{fmt(mine['extra_bytes'])} ({fmt(mine['extra_seconds'])} s)",
                f"rsync --partial {fmt(other['extra_bytes'])} ({fmt(other['extra_seconds'])} s)", "")
    for figure in documents.get("downlink", {}).get("figures", []):  # ratios near 1: 3 decimals, not 3 digits
        if figure.get("kind") == "goodput" and figure["method"] == "harbour":
            plain = _find(documents, "downlink", "goodput", link_mbit=figure["link_mbit"], rtt_ms=figure["rtt_ms"],
                          method="plain_get")
            add(f"dataset download goodput fraction, {figure['link_mbit']:g} Mbit/s, {figure['rtt_ms']} ms RTT "
                f"(goal >= {fmt(figure['goal'])})", f"{figure['goodput_fraction']:.3f}",
                f"link rate 1.0 (plain HTTP GET {plain['goodput_fraction']:.3f})" if plain else "link rate 1.0",
                f"{figure['goodput_fraction']:.3f}")
        elif figure.get("kind") == "cuts":
            add(f"dataset download, extra bytes per cut ({fmt(figure['cuts'])} cuts; goal <= "
                f"{fmt(figure['goal_bytes_per_cut'])})", fmt(figure["extra_bytes_per_cut"]), "the same download "
                "without cuts", "")
            add(f"dataset download, wire bytes / size, {fmt(figure['size_mb'])} MB after {fmt(figure['cuts'])} cuts "
                f"(goal <= {fmt(figure['goal_wire_to_size'])})", f"{figure['wire_to_size']:.4f}",
                f"without cuts {figure['wire_clean_to_size']:.4f}", f"{figure['wire_to_size']:.4f}")
    mine = _find(documents, "loopback", "loopback", method="harbour")
    flight = _find(documents, "loopback", "loopback", method="flight")
    if mine and flight:
        add("loopback sync rows/s (segments already sealed)", fmt(mine["rows_per_s"]),
            f"Flight do_put {fmt(flight['rows_per_s'])}", fmt(mine["ratio_to_flight"]))
    f = _find(documents, "hub_merge", "merge", sites=20)
    if f:
        add("hub merge rows/s, 20 sites", fmt(f["rows_per_s"]),
            f"write_deltalake per segment {fmt(f['plain_per_segment_rows_per_s'])}",
            fmt(f["ratio_to_plain_per_segment"]))
    for figure in documents.get("edge_backlog", {}).get("figures", []):
        if figure.get("kind") == "restart" and figure["backlog_segments"]:
            add(f"edge restart to first status, {fmt(figure['backlog_segments'])}-segment backlog (s)",
                fmt(figure["status_seconds"]), "empty ledger", fmt(figure["ratio_to_empty"]))
            add("edge peak RSS with that backlog (MiB)", fmt(figure["peak_rss_mib"]), "empty ledger",
                fmt(figure["rss_ratio_to_empty"]))
    status = [f for f in documents.get("fleet_status", {}).get("figures", []) if f.get("kind") == "status"]
    if status:
        f = max(status, key=lambda figure: figure["segments_per_site"])
        add(f"fleet report, {fmt(f['segments_per_site'])} segments per site (ms; x its time at 100 per site)",
            f"{fmt(f['report_ms'])} (x{fmt(f['report_vs_100'])})",
            f"recomputed from every segment {fmt(f['report_recomputed_ms'])} (x{fmt(f['report_recomputed_vs_100'])})",
            fmt(f["report_ms"] / f["report_recomputed_ms"]))
        add(f"GET /v1/fleet from `harbour hub run`, {fmt(f['segments_per_site'])} segments per site (ms)",
            fmt(f["v1_fleet_ms"]), "the same hub with 100 per site", fmt(f["v1_fleet_vs_100"]))
    for name in ("link", "loopback", "hub_merge", "edge_ingest"):
        f = _find(documents, name, "peak_rss")
        if f:
            text = ", ".join(f"{k.removesuffix('_mib')} {fmt(v)}" for k, v in f.items() if k != "kind")
            add(f"peak RSS during {name} (MiB)", text, "", "")
    lines = ["| figure | Harbour | baseline (same run) | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return lines


def render(results: Path, out: Path) -> str:
    documents = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}
    img_dir = out.parent / "img"
    lines = ["# Benchmarks", "",
             "<!-- Generated by `python bench/render.py` from bench/results/*.json: edit bench/, not this file. -->",
             "", "Harbour measured against what a user would do instead (rsync of Parquet files, Arrow Flight, "
             "JSON over HTTP), on the same rows, in the same run, on loopback through the project's link proxy "
             "(scenarios/link_proxy.py). Run `python bench/run.py` (or `--quick`), then `python bench/render.py`.",
             "", "## Summary", ""]
    lines += summary(documents)
    for name in [n for n in BENCHMARKS if n in documents] + [n for n in documents if n not in BENCHMARKS]:
        document = documents[name]
        lines += ["", f"## {document.get('title') or name}", "",
                  f"`{name}` -- {BENCHMARKS.get(name, '')}. Recorded {document.get('recorded_at', '?')} with "
                  f"`{document.get('command', '?')}`" + (" (**quick**: one run, small data)" if document.get("quick")
                                                           else "") + f", {document.get('seconds', '?')} s.", ""]
        picture = chart(name, document, img_dir)
        if picture is not None:
            lines += [f"![{name}]({picture.relative_to(out.parent).as_posix()})", ""]
        for kind, figures in by_kind(document).items():
            if len(by_kind(document)) > 1:
                lines += [f"**{kind}**", ""]
            lines += table(figures) + [""]
        lines += [f"- {note}" for note in document.get("notes", [])]
    lines += ["", "## How far to trust these numbers", ""] + [f"- {c}" for c in CAVEATS]
    machine = next(iter(documents.values()), {}).get("machine", {})
    lines += ["", f"Machine: {machine.get('cpus', '?')} CPUs, Python {machine.get('python', '?')}, "
              f"pyarrow {machine.get('pyarrow', '?')}, {machine.get('platform', '?')}. Shared and noisy: compare "
              "ratios within a run, not absolute numbers across runs.", ""]
    text = "\n".join(lines)
    out.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    render(args.results, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
