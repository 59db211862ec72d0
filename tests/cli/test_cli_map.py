"""``vaspace map --out``: a valid SVG and PNG that name the segments they draw."""

from __future__ import annotations

import os
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest
from cli_helpers import invoke

import vaspace

BASE = 0x4000_0000_0000
MiB = 1 << 20
NAMES = ("tiny-header", "big-table", "other-data")


@pytest.fixture
def window_objects(registry: str) -> str:
    """Sizes 1000x apart, a shared segment, and a VAS this process has attached."""
    header = vaspace.segment_create_sz("tiny-header", BASE, 4096, 0o600)
    table = vaspace.segment_create_sz("big-table", BASE + 1024 * MiB, 1024 * MiB, 0o600)
    other = vaspace.segment_create_sz("other-data", BASE, 16 * MiB, 0o600)
    a = vaspace.vas_create("alpha", 0o600)
    b = vaspace.vas_create("beta", 0o600)
    vaspace.vas_seg_attach(a, header, os.O_RDWR)
    vaspace.vas_seg_attach(a, table, os.O_RDWR)
    vaspace.vas_seg_attach(b, other, os.O_RDWR)
    vaspace.vas_seg_attach(b, table, os.O_RDONLY)
    vaspace.vas_attach(0, a, os.O_RDONLY)
    return registry


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of each chunk, checking each CRC."""
    chunks = []
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_svg_is_valid_and_names_every_segment(window_objects: str, tmp_path: Path) -> None:
    path = tmp_path / "window.svg"
    r = invoke("map", "--out", str(path))
    assert r.code == 0 and r.stderr == ""
    assert f"wrote {path}" in r.stdout
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = " ".join("".join(el.itertext()) for el in root.iter()
                    if el.tag.endswith("text"))
    for name in NAMES:
        assert name in text
    for label in ("4K", "1G", "16M", "alpha", "beta", f"attached: pid {os.getpid()} (ro)",
                  "0x400040000000", "shared segment"):
        assert label in text


def test_png_is_valid_and_names_every_segment(window_objects: str, tmp_path: Path) -> None:
    path = tmp_path / "window.png"
    r = invoke("map", "--out", str(path))
    assert r.code == 0 and r.stderr == ""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks = _png_chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert 600 <= width <= 4000 and 200 <= height <= 2000
    texts = dict(body.split(b"\0", 1) for kind, body in chunks if kind == b"tEXt")
    described = texts[b"Description"].decode()
    for name in NAMES:
        assert name in described


def test_terminal_map_marks_shared_and_attached(window_objects: str) -> None:
    r = invoke("map")
    assert r.code == 0
    lines = r.stdout.splitlines()
    alpha = next(line for line in lines if line.startswith("alpha"))
    beta = next(line for line in lines if line.startswith("beta"))
    assert "tiny-header 4K rw" in alpha and "big-table* 1G rw" in alpha
    assert "other-data 16M rw" in beta and "big-table* 1G ro" in beta
    assert f"attached: pid {os.getpid()} (ro)" in alpha and "attached" not in beta
    # the shared segment's box starts in the same column in both lanes
    assert alpha.index("[big-table*") == beta.index("[big-table*")


def test_empty_registry_draws(registry: str, tmp_path: Path) -> None:
    assert "no VASes or segments" in invoke("map").stdout
    path = tmp_path / "empty.svg"
    assert invoke("map", "--out", str(path)).code == 0
    ET.parse(path)
