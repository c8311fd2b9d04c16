"""One render shared by overlapping scrapes: every reader gets the whole body, or an error."""

from __future__ import annotations

import gzip

import pytest

from oms_exporter.gzipbody import Deflated, KeptText, deflate
from oms_exporter.scrapes import Render


class Block:
    """A kept block as the collector holds one: its text, its segment, or both."""

    def __init__(self, text: bytes | None, deflated: Deflated | None) -> None:
        self.text = text
        self.deflated = deflated

    def kept(self) -> KeptText:
        return KeptText(self.text, self.deflated, self)


def lines(start: int, count: int) -> bytes:
    return "".join(f'm{{project_id="p{i}"}} {i}.0\n' for i in range(start, start + count)).encode()


def render(parts: list[bytes | list[bytes] | KeptText], *, gzip: bool) -> Render:
    return Render(parts, gzip=gzip, window_seconds=60.0, monotonic=lambda: 0.0)


async def read_all(target: Render) -> bytes:
    target.arrive()
    index, pieces = 0, []
    try:
        while (piece := await target.piece(index)) is not None:
            pieces.append(piece)
            index += 1
    finally:
        target.leave(index)
    return b"".join(pieces)


@pytest.mark.parametrize("zipped", [False, True])
async def test_readers_of_one_render_get_the_same_whole_body(zipped: bool):
    settled = lines(0, 4000)
    kept = Block(None, deflate(settled))  # only its segment is kept: plain inflates it
    shared = render([b"# HELP m x\n", kept.kept(), lines(4000, 4000)], gzip=zipped)
    first, second = await read_all(shared), await read_all(shared)
    assert first == second
    assert len(first) == await shared.size()  # Content-Length
    text = gzip.decompress(first) if zipped else first
    assert text == b"# HELP m x\n" + settled + lines(4000, 4000)


async def test_a_piece_that_cannot_be_made_fails_every_reader_not_only_the_first():
    """A reader must never get a body cut short with a 200: a broken segment fails them all."""
    broken = Deflated(b"\xff\xff not deflate", 0, 100)
    shared = render([lines(0, 8000), Block(None, broken).kept()], gzip=False)
    for _reader in range(2):
        with pytest.raises(Exception, match=r"(?i)invalid"):
            await read_all(shared)
