"""Bodies joined from kept blocks: one valid gzip member, each block deflated once."""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from dataclasses import dataclass

import pytest

from oms_exporter import gzipbody
from oms_exporter.gzipbody import (
    Deflated,
    KeptText,
    gzip_pieces,
    plain_groups,
    plain_size,
    plain_text,
    units_of,
)


@dataclass
class Block:
    text: bytes | None
    deflated: Deflated | None = None

    def kept(self) -> KeptText:
        return KeptText(self.text, self.deflated, self)


def one_member(body: bytes) -> bytes:
    """Inflate a gzip body that must be exactly one member (its CRC and length checked)."""
    inflater = zlib.decompressobj(31)
    text = inflater.decompress(body) + inflater.flush()
    assert inflater.eof, "the member has no end"
    assert inflater.unused_data == b"", "more than one member: some clients stop at the first"
    return text


def lines(prefix: str, count: int) -> bytes:
    return "".join(f'{prefix}{{project_id="p{i}"}} {i}.0\n' for i in range(count)).encode()


Parts = list[bytes | list[bytes] | KeptText]


async def gzip_body(parts: Parts) -> bytes:
    body = await gzip_pieces(units_of(parts), piece_bytes=4096)
    joined = b"".join(body.pieces)
    assert len(joined) == body.size  # what Content-Length says
    return joined


def plain_body(parts: Parts) -> bytes:
    units = units_of(parts)
    joined = b"".join(map(plain_text, plain_groups(units)))
    assert len(joined) == plain_size(units)  # what Content-Length says, settled blocks too
    return joined


async def test_segments_of_random_bytes_join_to_their_crc():
    """ISA-L's segments and CRCs, checked by zlib: random data is stored, not compressed."""
    texts = [os.urandom(10_007), b"", os.urandom(14_003)]
    blocks = [Block(text) for text in texts]
    assert one_member(await gzip_body([block.kept() for block in blocks])) == b"".join(texts)


async def test_joined_segments_are_one_gzip_member_of_the_whole_text():
    blocks = [Block(lines(f"family_{n}", 300)) for n in range(5)]
    blocks[2].deflated = gzipbody.deflate(blocks[2].text or b"")
    blocks[2].text = None  # kept as its segment only
    parts: Parts = [b"# HELP a b\n", *(block.kept() for block in blocks)]
    parts.append([b"lag 1.0\n"] * 50_000)  # made for the scrape: more than one segment
    expected = (
        b"# HELP a b\n"
        + b"".join(lines(f"family_{n}", 300) for n in range(5))
        + b"lag 1.0\n" * 50_000
    )
    zipped = await gzip_body(parts)
    assert one_member(zipped) == expected
    assert len(zipped) < len(expected) / 5
    assert plain_body(parts) == expected


async def test_an_empty_body_is_a_valid_member():
    assert one_member(await gzip_body([])) == b""
    assert plain_body([]) == b""


@pytest.mark.skipif(shutil.which("gzip") is None, reason="needs the gzip command")
async def test_the_gzip_command_accepts_the_body():
    block = Block(lines("x", 2000))
    body = await gzip_body([b"head\n", block.kept(), [b"tail\n"]])
    gzip_command = ["gzip", "-dc"]
    done = subprocess.run(gzip_command, input=body, capture_output=True, check=True)  # noqa: ASYNC221
    assert done.stdout == b"head\n" + lines("x", 2000) + b"tail\n"


async def test_a_kept_text_is_deflated_once_until_it_changes(monkeypatch: pytest.MonkeyPatch):
    deflated: list[bytes] = []
    real = gzipbody.deflate

    def counting(text: bytes) -> Deflated:
        deflated.append(text)
        return real(text)

    monkeypatch.setattr(gzipbody, "deflate", counting)
    same, changing = Block(lines("same", 100)), Block(lines("changing", 100))

    def parts() -> Parts:
        return [same.kept(), changing.kept(), [b"lag 2.0\n"]]

    first = one_member(await gzip_body(parts()))
    assert same.text in deflated
    assert changing.text in deflated
    kept_segment = same.deflated
    assert kept_segment is not None

    deflated.clear()
    changing.text, changing.deflated = lines("changed", 100), None
    second = one_member(await gzip_body(parts()))
    assert deflated == [changing.text, b"lag 2.0\n"]  # not the unchanged block
    assert same.deflated is kept_segment
    assert second == lines("same", 100) + lines("changed", 100) + b"lag 2.0\n" != first
    third = one_member(await gzip_body(parts()))
    assert third == second


async def test_a_text_replaced_while_deflating_does_not_take_the_old_segment():
    """The collector may render a block again while a scrape deflates its former text."""
    block = Block(lines("old", 100))
    units = units_of([block.kept()])
    block.text = lines("new", 100)  # replaced before the threads are done
    body = b"".join((await gzip_pieces(units)).pieces)
    assert one_member(body) == lines("old", 100)  # the scrape sends what it took
    assert block.deflated is None  # and caches nothing for the new text
