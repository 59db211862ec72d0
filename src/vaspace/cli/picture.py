"""``vaspace map``: a picture of the window, one lane per VAS.

Segments sizes differ by orders of magnitude (a 4 KiB header beside a 1 GiB
table) and sit far apart in a 16 TiB window, so a linear axis would show one
box and some dust.  The axis is therefore *broken*: the occupied address
intervals are laid out in address order, each one as wide as
``1.5 + log10(bytes / 4 KiB)`` (a 1000x larger segment is 3 units wider, not
1000x), and every empty gap between them shrinks to one fixed-width break
marked ``≈``.  Tick labels carry the true addresses, so nothing is lost but
proportion.

The same layout drives the matplotlib picture (``--out FILE.svg|.png``) and
the terminal rendering.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from ..access import access_type_name
from .model import SegInfo, Snapshot, listing_holders, seg_label, snapshot, vas_label
from .output import emit_json, human_size, out

GAP_UNITS = 0.8
_PAGE = 4096
_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac"]
_TERM_STYLES = ["blue", "dark_orange", "green", "red", "cyan", "yellow", "magenta",
                "bright_magenta", "bright_red", "white"]


@dataclass
class Box:
    """One segment drawn in one lane, from x0 to x1 in layout units."""

    seg: SegInfo
    access: str
    x0: float
    x1: float
    shared: bool
    color: int
    private: bool = False  # the VAS's own memory (vas_mmap), not a segment


@dataclass
class Lane:
    """One VAS (or the unattached segments), and who has it attached."""

    label: str
    holders: str
    boxes: list[Box] = field(default_factory=list)
    # Segments of the lane whose region cannot be read: no place on the axis.
    damaged: list[str] = field(default_factory=list)


@dataclass
class Layout:
    """Lanes, and the broken axis: [(x, address)] ticks and [(x0, x1, bytes)] gaps."""

    lanes: list[Lane]
    ticks: list[tuple[float, int]]
    gaps: list[tuple[float, float, int]]
    width: float
    window: tuple[int, int]
    root: str


def interval_units(nbytes: int) -> float:
    """Width of an occupied interval: logarithmic, so that 1000x is 3 units, not 1000x."""
    return 1.5 + math.log10(max(nbytes, _PAGE) / _PAGE)


def layout(snap: Snapshot) -> Layout:
    """Place every segment and private range of every VAS on the broken axis."""
    # A damaged segment has no readable region, so no place on the axis: its
    # lane names it instead (``damaged: ...``).
    segs = sorted((s for s in snap.segs.values() if not s.damaged),
                  key=lambda s: (s.start, s.end, s.id))
    color = {s.id: i % len(_COLORS) for i, s in enumerate(segs)}
    private = {v.id: v.private_infos() for v in snap.vases}
    occupied = segs + [p for ps in private.values() for p in ps]
    points = sorted({p for s in occupied for p in (s.start, s.end)})
    xs: dict[int, float] = {}
    gaps = []
    x = 0.0
    for i, p in enumerate(points):
        xs[p] = x
        if i + 1 == len(points):
            break
        nxt = points[i + 1]
        if any(s.start < nxt and p < s.end for s in occupied):
            x += interval_units(nxt - p)
        else:
            gaps.append((x, x + GAP_UNITS, nxt - p))
            x += GAP_UNITS
    lanes = []
    for v in snap.vases:
        holders = listing_holders(v) if v.holders else ""
        lane = Lane(f"{vas_label(v)} (vid {v.id})", holders)
        for link in v.links:
            s = snap.segs[link.sid]
            if s.damaged:
                lane.damaged.append(f"{seg_label(s)} (sid {s.id})")
                continue
            lane.boxes.append(Box(s, access_type_name(link.type), xs[s.start], xs[s.end],
                                  len(s.vases) > 1, color[s.id]))
        for p in private[v.id]:
            lane.boxes.append(Box(p, access_type_name(p.vases[0][1]), xs[p.start], xs[p.end],
                                  False, len(_COLORS) - 1, private=True))
        lanes.append(lane)
    loose = [s for s in segs if not s.vases]
    broken = [f"{seg_label(s)} (sid {s.id})" for s in snap.segs.values()
              if s.damaged and not s.vases]
    if loose or broken:
        lanes.append(Lane("(in no VAS)", "", [Box(s, "", xs[s.start], xs[s.end], False,
                                                   color[s.id]) for s in loose], broken))
    for lane in lanes:
        lane.boxes.sort(key=lambda b: b.x0)
    return Layout(lanes, [(xs[p], p) for p in points], gaps, x, snap.window, snap.root)


def _box_label(b: Box) -> str:
    return f"{b.seg.name}\n{human_size(b.seg.size)}" + (f" {b.access}" if b.access else "")


# ---------------------------------------------------------------- matplotlib


def draw(lay: Layout, path: Path) -> None:
    """Write the picture to ``path`` (.svg or .png) with matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch, Rectangle
    except ImportError:
        raise click.ClickException(
            "vaspace map --out needs matplotlib, which is not installed "
            "(pip install 'vaspace[plot]'); without --out it draws in the terminal") from None

    # Keep text as text in SVG: searchable, selectable, and checkable by tests.
    matplotlib.rcParams["svg.fonttype"] = "none"
    nl = max(len(lay.lanes), 1)
    width_units = max(lay.width, 4.0)
    fig_w = min(max(8.0, 0.55 * width_units + 4.5), 30.0)
    fig_h = 2.0 + 0.85 * nl
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    ax.set_xlim(-0.2, width_units + 0.2)
    ax.set_ylim(nl - 0.45, -0.75)
    # Lanes: the attached ones get a tinted band.
    for i, lane in enumerate(lay.lanes):
        if lane.holders:
            ax.axhspan(i - 0.45, i + 0.45, color="#fff3c4", zorder=0)
        ax.axhline(i, color="#dddddd", lw=0.8, zorder=0)
    # Connect the boxes of a shared segment across lanes.
    where: dict[int, list[tuple[int, Box]]] = {}
    for i, lane in enumerate(lay.lanes):
        for b in lane.boxes:
            where.setdefault(b.seg.id, []).append((i, b))
    for places in where.values():
        if len(places) > 1:
            ys = [i for i, _ in places]
            b = places[0][1]
            xc = (b.x0 + b.x1) / 2
            ax.plot([xc, xc], [min(ys), max(ys)], color=_COLORS[b.color], lw=2.5, ls=(0, (3, 2)),
                    zorder=1)
    for i, lane in enumerate(lay.lanes):
        for b in lane.boxes:
            ax.add_patch(Rectangle((b.x0 + 0.04, i - 0.3), b.x1 - b.x0 - 0.08, 0.6,
                                   facecolor=_COLORS[b.color], alpha=0.85,
                                   edgecolor="black", lw=1.6 if b.shared else 0.8,
                                   hatch="//" if b.shared else None, zorder=2))
    for x0, x1, nbytes in lay.gaps:
        ax.axvspan(x0, x1, color="#f2f2f2", zorder=0)
        ax.text((x0 + x1) / 2, -0.6, f"≈\n{human_size(nbytes)}", ha="center", va="center",
                fontsize=7, color="#777777")
    # Tick labels: the true addresses at every segment boundary.
    ax.set_xticks([x for x, _ in lay.ticks])
    ax.set_xticklabels([f"{a:#x}" for _, a in lay.ticks], rotation=35, ha="right", fontsize=7)
    ax.set_yticks(range(len(lay.lanes)))
    labels = []
    for lane in lay.lanes:
        label = f"{lane.label}\nattached: {lane.holders}" if lane.holders else lane.label
        labels.append(label + "".join(f"\n{d}" for d in lane.damaged))
    ax.set_yticklabels(labels, fontsize=8)
    for tick, lane in zip(ax.get_yticklabels(), lay.lanes, strict=False):
        if lane.holders:
            tick.set_fontweight("bold")
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"vaspace window [{lay.window[0]:#x}, {lay.window[1]:#x})  ·  {lay.root}\n"
                 "box width ~ log(size); empty gaps compressed (≈); ticks are true addresses",
                 fontsize=9, loc="left")
    handles = [
        Patch(facecolor="#cccccc", edgecolor="black", hatch="//", lw=1.6,
              label="shared segment (in several VASes)"),
        Line2D([0], [0], color="#555555", lw=2.5, ls=(0, (3, 2)), label="same segment"),
        Patch(facecolor="#fff3c4", edgecolor="#d9b650", label="VAS attached by a process "
              "(bold label)"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7,
              frameon=False)
    if not lay.lanes:
        ax.text(width_units / 2, 0, "no VASes or segments", ha="center", va="center")
    fig.tight_layout()
    # Labels go in last, once the axes' size is known: a label too wide for its
    # box gets a smaller font (down to 5.5 pt) instead of spilling over.
    inch_per_unit = ax.get_window_extent().width / fig.dpi / (width_units + 0.4)
    for i, lane in enumerate(lay.lanes):
        for b in lane.boxes:
            label = _box_label(b)
            chars = max(len(part) for part in label.split("\n"))
            box_in = (b.x1 - b.x0) * inch_per_unit - 0.06
            size = max(5.5, min(8.0, 8.0 * box_in / (chars * 0.066 + 0.04)))
            ax.text((b.x0 + b.x1) / 2, i, label, ha="center", va="center", fontsize=size,
                    zorder=3, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                    "alpha": 0.85})
    names = sorted({b.seg.name for lane in lay.lanes for b in lane.boxes})
    # PNG text chunks name what is drawn, for search tools (and screen readers).
    meta = {"Title": f"vaspace map of {lay.root}", "Description": "segments: " + ", ".join(names)}
    fig.savefig(path, dpi=110, metadata=meta)
    plt.close(fig)


# ---------------------------------------------------------------- terminal


def render_text(lay: Layout) -> list[Text]:
    """The terminal picture: lanes of ``[name size]`` boxes on the same broken axis.

    Each occupied interval gets enough columns for the labels that start in
    it (and its start address); gaps are `` ≈ ``.  A ``*`` marks a segment
    shared by several VASes.
    """
    cols: dict[float, int] = {}
    xs = [x for x, _ in lay.ticks]
    gap_starts = {g[0] for g in lay.gaps}
    for x in xs[:-1]:
        if x in gap_starts:
            cols[x] = 3
            continue
        nxt = xs[xs.index(x) + 1]
        # Wider for larger intervals (the same log scale as the picture), and
        # wide enough for the labels and the start address.
        need = max(16, round(4 * (nxt - x)))
        for lane in lay.lanes:
            for b in lane.boxes:
                if b.x0 == x:
                    spans = sum(1 for y in xs if b.x0 <= y < b.x1)
                    need = max(need, -(-(len(_term_label(b)) + 3) // spans))
        cols[x] = need
    pos: dict[float, int] = {}
    p = 0
    for x in xs:
        pos[x] = p
        p += cols.get(x, 0)
    total = p + 1
    name_w = max([len(lane.label) for lane in lay.lanes] + [4]) + 2
    lines = []
    header = Text(" " * name_w)
    ruler = [" "] * (total + 16)
    for x, addr in lay.ticks:
        if x in gap_starts and x != xs[-1]:
            continue
        text = f"{addr:#x}"
        start = pos[x]
        if all(c == " " for c in ruler[start:start + len(text) + 1]):
            ruler[start:start + len(text)] = list(text)
    header.append("".join(ruler).rstrip(), style="dim")
    lines.append(header)
    for lane in lay.lanes:
        row = Text(lane.label.ljust(name_w), style="bold" if lane.holders else "")
        buf: list[tuple[str, str]] = [(" ", "")] * total
        for x0, _x1, _ in lay.gaps:
            for k, ch in enumerate(" ≈ "):
                buf[pos[x0] + k] = (ch, "dim")
        for b in lane.boxes:
            a, z = pos[b.x0], pos[b.x1]
            style = _TERM_STYLES[b.color] + (" bold" if b.shared else "")
            fill = "~" if b.shared else "-"
            cells = ["["] + [fill] * max(z - a - 2, 0) + ["]"]
            label = _term_label(b)[: max(z - a - 2, 0)]
            cells[1:1 + len(label)] = list(label)
            for k, ch in enumerate(cells[: z - a]):
                buf[a + k] = (ch, style)
        # One styled run per box, not per character: short escape sequences on a tty.
        for style, run in itertools.groupby(buf, key=lambda cell: cell[1]):
            row.append("".join(ch for ch, _ in run), style=style)
        if lane.holders:
            row.append(f"  attached: {lane.holders}", style="bold")
        if lane.damaged:
            row.append(f"  {', '.join(lane.damaged)}", style="red")
        lines.append(row)
    return lines


def _term_label(b: Box) -> str:
    shared = "*" if b.shared else ""
    access = f" {b.access}" if b.access else ""
    return f"{b.seg.name}{shared} {human_size(b.seg.size)}{access}"


@click.command("map", short_help="Draw the window: one lane per VAS.",
               epilog="\b\nExamples:\n  vaspace map\n  vaspace map --out window.svg\n"
               "  vaspace map --out window.png")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a picture instead: FILE.svg or FILE.png (needs matplotlib).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the layout as JSON (lanes and boxes; keys: docs/cli.md).")
def command(out_path: Path | None, as_json: bool) -> None:
    """Draw the window: one lane per VAS, its segments as boxes at their addresses.

    Widths grow with log(size) and empty gaps are compressed, so segments
    1000x apart in size stay readable; tick labels are the true addresses.
    Shared segments are hatched and linked across lanes; attached VASes are
    bold and tinted.
    """
    lay = layout(snapshot())
    if as_json:
        emit_json(layout_json(lay))
        return
    if out_path is not None:
        suffix = out_path.suffix.lower()
        if suffix not in (".svg", ".png"):
            raise click.UsageError(f"--out {str(out_path)!r}: the file must end in .svg or .png")
        if not out_path.resolve().parent.is_dir():
            # Checked before matplotlib loads: fail fast, and say which part is missing.
            raise click.ClickException(f"cannot write {out_path}: no such directory "
                                       f"{out_path.resolve().parent}")
        draw(lay, out_path)
        out().print(f"wrote {out_path} ({len(lay.lanes)} lanes, "
                    f"{sum(len(lane.boxes) for lane in lay.lanes)} boxes)")
        return
    con = out()
    con.print(f"window [{lay.window[0]:#x}, {lay.window[1]:#x})   {lay.root}")
    if not lay.lanes:
        con.print("no VASes or segments")
        return
    for line in render_text(lay):
        con.print(line, overflow="ignore", crop=False, soft_wrap=True)
    con.print("* shared by several VASes; ≈ an empty gap; bold: attached by a process",
              style="dim")


def layout_json(lay: Layout) -> dict[str, Any]:
    """The layout as JSON: lanes with boxes (segment, address range, x range)."""
    return {
        "window": {"start": lay.window[0], "end": lay.window[1]},
        "lanes": [{"label": lane.label, "attached": lane.holders,
                   "boxes": [{"segment": b.seg.name, "id": b.seg.id, "start": b.seg.start,
                              "end": b.seg.end, "size": b.seg.size, "type": b.access,
                              "shared": b.shared, "private": b.private,
                              "x0": round(b.x0, 3), "x1": round(b.x1, 3)}
                             for b in lane.boxes],
                   "damaged": lane.damaged} for lane in lay.lanes],
    }
