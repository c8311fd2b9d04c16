"""gzip bodies joined from cached deflate segments: one valid member, deflated once per text."""

from __future__ import annotations

import shutil
import subprocess
import zlib
from dataclasses import dataclass

import pytest

from oms_exporter import gzipbody
from oms_exporter.gzipbody import KeptText, gzip_pieces, segments_of


@dataclass
class Kept:
    text: bytes
    deflated: bytes | None = None


def one_member(body: bytes) -> bytes:
    """Inflate a gzip body that must be exactly one member (its CRC and length checked)."""
    inflater = zlib.decompressobj(31)
    text = inflater.decompress(body) + inflater.flush()
    assert inflater.eof, "the member has no end"
    assert inflater.unused_data == b"", "more than one member: some clients stop at the first"
    return text


def lines(prefix: str, count: int) -> bytes:
    return "".join(f'{prefix}{{project_id="p{i}"}} {i}.0\n' for i in range(count)).encode()


async def body_of(parts: list[bytes | list[bytes] | KeptText]) -> bytes:
    return b"".join(await gzip_pieces(segments_of(parts), piece_bytes=4096))


async def test_joined_segments_are_one_gzip_member_of_the_whole_text():
    blocks = [Kept(lines(f"family_{n}", 300)) for n in range(5)]
    parts: list[bytes | list[bytes] | KeptText] = [b"# HELP a b\n"]
    parts += [KeptText(block.text, block) for block in blocks]
    parts.append([b"lag 1.0\n"] * 50_000)  # made for the scrape: more than one segment
    body = await body_of(parts)
    expected = b"# HELP a b\n" + b"".join(b.text for b in blocks) + b"lag 1.0\n" * 50_000
    assert one_member(body) == expected
    assert len(body) < len(expected) / 5


async def test_an_empty_body_is_a_valid_member():
    assert one_member(await body_of([])) == b""


@pytest.mark.skipif(shutil.which("gzip") is None, reason="needs the gzip command")
async def test_the_gzip_command_accepts_the_body():
    block = Kept(lines("x", 2000))
    body = await body_of([b"head\n", KeptText(block.text, block), [b"tail\n"]])
    done = subprocess.run(  # noqa: ASYNC221 - a short run of a local command
        ["gzip", "-dc"], input=body, capture_output=True, check=True
    )
    assert done.stdout == b"head\n" + block.text + b"tail\n"


async def test_a_kept_text_is_deflated_once_until_it_changes(monkeypatch: pytest.MonkeyPatch):
    deflated: list[bytes] = []
    real = gzipbody.deflate

    def counting(text: bytes) -> bytes:
        deflated.append(text)
        return real(text)

    monkeypatch.setattr(gzipbody, "deflate", counting)
    same, changing = Kept(lines("same", 100)), Kept(lines("changing", 100))

    def parts() -> list[bytes | list[bytes] | KeptText]:
        return [KeptText(same.text, same), KeptText(changing.text, changing), [b"lag 2.0\n"]]

    first = one_member(await body_of(parts()))
    assert same.text in deflated
    assert changing.text in deflated
    kept_segment = same.deflated
    assert kept_segment is not None

    deflated.clear()
    changing.text, changing.deflated = lines("changed", 100), None
    second = one_member(await body_of(parts()))
    assert deflated == [changing.text, b"lag 2.0\n"]  # not the unchanged block
    assert same.deflated is kept_segment
    assert second == same.text + changing.text + b"lag 2.0\n" != first


async def test_a_text_replaced_while_deflating_does_not_take_the_old_segment():
    """The collector may render a block again while a scrape deflates its former text."""
    block = Kept(lines("old", 100))
    units = segments_of([KeptText(block.text, block)])
    block.text = lines("new", 100)  # replaced before the threads are done
    body = b"".join(await gzip_pieces(units))
    assert one_member(body) == lines("old", 100)  # the scrape sends what it took
    assert block.deflated is None  # and caches nothing for the new text
