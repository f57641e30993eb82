"""The report's pictures (matplotlib, no display needed).

* ``backlog.png`` -- per ship: bytes waiting on board over time, the background shaded by what the link
  was doing (port, at sea, down, stalled, corrupting), faults marked where they were injected.
* ``throughput.png`` -- per ship: bytes per second the link proxy forwarded to the hub, against the
  link's capacity at that moment (unlimited port links are not drawn as a line).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

if TYPE_CHECKING:
    from .runner import RunResult

SMOOTHING_SAMPLES = 3
FLOOR_KB = 0.1
"""Throughput is drawn on a log scale; an idle interval is drawn at this floor instead of at zero."""

FIXED_COLOURS = {"down": "#d62728", "stalled": "#9467bd", "corrupting": "#ff7f0e"}
PROFILE_COLOURS = ["#2ca02c", "#1f77b4", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f"]


def _colours(result: RunResult) -> dict[str, str]:
    colours = dict(FIXED_COLOURS)
    for i, name in enumerate(result.scenario.links):
        colours.setdefault(name, PROFILE_COLOURS[i % len(PROFILE_COLOURS)])
    return colours


def _grid(n: int) -> tuple[plt.Figure, list]:
    columns = 1 if n <= 6 else 2
    rows = math.ceil(n / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(11 if columns == 1 else 14, 1.0 + 1.7 * rows),
                                sharex=True, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return figure, flat[:n]


def _shade(ax, result: RunResult, ship, end: float, colours: dict[str, str]) -> None:
    history = ship.link.history
    for record, following in zip(history, [*history[1:], None], strict=True):
        until = following.at if following else end
        if until > record.at:
            ax.axvspan(record.at, until, color=colours.get(record.label, "#cccccc"), alpha=0.18, lw=0)
    for fault in result.faults:
        if fault.target in (ship.name, "hub"):
            ax.axvline(fault.started_at, color="black", lw=0.8, ls=":")
            ax.annotate(fault.kind, (fault.started_at, 1), xycoords=("data", "axes fraction"), fontsize=6,
                        rotation=90, va="top", ha="right")


def _legend(figure, result: RunResult, colours: dict[str, str]) -> None:
    labels = {r.label for ship in result.ships for r in ship.link.history}
    handles = [Patch(color=colours.get(label, "#cccccc"), alpha=0.35, label=label) for label in sorted(labels)]
    figure.legend(handles=handles, loc="upper right", ncol=len(handles), fontsize=8, frameon=False)


def backlog_chart(result: RunResult, path: Path) -> Path:
    colours = _colours(result)
    end = max((s["t"] for ship in result.ships for s in ship.samples), default=1.0)
    figure, axes = _grid(len(result.ships))
    for ax, ship in zip(axes, result.ships, strict=True):
        points = [(s["t"], s["backlog_bytes"] / 2**20) for s in ship.samples if s["backlog_bytes"] is not None]
        _shade(ax, result, ship, end, colours)
        if points:
            ax.plot(*zip(*points, strict=True), color="black", lw=1.2)
        ax.set_ylabel("MiB", fontsize=8)
        ax.set_title(ship.name, fontsize=9, loc="left")
        ax.axvline(result.plan.duration, color="grey", lw=1)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("real seconds (voyage, then drain)")
    figure.suptitle(f"{result.scenario.name}: backlog on board (pending + unsealed), link state shaded", fontsize=10,
                    x=0.01, ha="left")
    _legend(figure, result, colours)
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def throughput_chart(result: RunResult, path: Path) -> Path:
    colours = _colours(result)
    end = max((s["t"] for ship in result.ships for s in ship.samples), default=1.0)
    figure, axes = _grid(len(result.ships))
    for ax, ship in zip(axes, result.ships, strict=True):
        _shade(ax, result, ship, end, colours)
        times, sent, capacity = [], [], []
        samples = ship.samples
        for i in range(1, len(samples)):
            before, after = samples[max(0, i - SMOOTHING_SAMPLES)], samples[i]
            dt = after["t"] - before["t"]
            if dt <= 0:
                continue
            times.append(after["t"])
            sent.append(max(FLOOR_KB, (after["bytes_up"] - before["bytes_up"]) / dt / 1000))
            capacity.append(samples[i - 1]["capacity"] / 1000 if samples[i - 1]["capacity"] else float("nan"))
        if times:
            ax.step(times, capacity, where="pre", color="#d62728", lw=1, label="link capacity")
            ax.plot(times, sent, color="black", lw=1, label=f"sent (mean over {SMOOTHING_SAMPLES} samples)")
            ax.set_yscale("log")
            ax.set_ylim(bottom=FLOOR_KB)
        ax.set_ylabel("kB/s", fontsize=8)
        ax.set_title(ship.name, fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="lower left")
    axes[-1].set_xlabel("real seconds")
    figure.suptitle(f"{result.scenario.name}: bytes sent to the hub vs link capacity", fontsize=10, x=0.01, ha="left")
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
