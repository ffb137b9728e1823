"""Streaming mode's byte handling: records in, frames and records out (no daemon needed)."""

from __future__ import annotations

import random
import socket
import struct
import threading

import pytest

from lofn._engine import StderrTail, attached_stdout
from lofn._stream import CHUNK, encode_records, split_records, text_records
from lofn.errors import OutputDecodeError

DELIMITERS = [b"\n", b"\0", b"\r\n", b"aa", b"aba", b"\r\n\r\n", "é".encode()]


def reference(stream: bytes, delimiter: bytes) -> list[bytes]:
    """What streaming mode promises: ``bytes.split`` of the whole stream, no empty last record."""
    records = stream.split(delimiter)
    if records[-1] == b"":
        records.pop()
    return records


def cut(data: bytes, rng: random.Random, most: int = 9) -> list[bytes]:
    """``data`` in pieces of 1 to ``most`` bytes (some empty pieces among them)."""
    pieces, at = [], 0
    while at < len(data):
        size = rng.randint(0, most)
        pieces.append(data[at:at + size])
        at += size
    return pieces


@pytest.mark.parametrize("delimiter", DELIMITERS)
def test_records_are_those_of_splitting_the_whole_stream(delimiter):
    rng = random.Random(delimiter)
    alphabet = [b"a", b"b", b"\r", b"\n", b"\0", b"\xc3", b"\xa9", delimiter]
    for _ in range(300):
        stream = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for most in (1, 3, 64):
            assert list(split_records(cut(stream, rng, most), delimiter)) == \
                reference(stream, delimiter), (stream, most)


def test_a_record_and_a_delimiter_cut_across_chunks():
    assert list(split_records([b"ab", b"c\r", b"\nd", b"e\r", b"\n"], b"\r\n")) == [b"abc", b"de"]
    assert list(split_records([b"\r", b"\n\r", b"\n"], b"\r\n")) == [b"", b""]
    assert list(split_records([b"x", b"a", b"a", b"ay"], b"aa")) == [b"x", b"ay"]
    assert list(split_records([b"one\n", b"two\nthr", b"ee"], b"\n")) == [b"one", b"two", b"three"]


def test_empty_records_and_an_unterminated_last_record():
    assert list(split_records([b"a\n\n\n"], b"\n")) == [b"a", b"", b""]
    assert list(split_records([b"a\nb"], b"\n")) == [b"a", b"b"]
    assert list(split_records([b"\n"], b"\n")) == [b""]
    assert list(split_records([], b"\n")) == []
    assert list(split_records([b"", b""], b"\n")) == []
    assert list(split_records([b"a", b"b"], None)) == [b"ab"]
    assert list(split_records([], None)) == [b""]


def test_a_huge_record_over_many_chunks_comes_whole():
    record = bytes(range(256)).replace(b"\n", b"") * 40_000  # 10 MB, no delimiter
    chunks = [record[i:i + 4096] for i in range(0, len(record), 4096)]
    out = list(split_records([b"first\n", *chunks, b"\nlast"], b"\n"))
    assert out == [b"first", record, b"last"]


def test_binary_bytes_pass_unchanged():
    rng = random.Random(7)
    records = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))).replace(b"\0", b"")
               for _ in range(200)]
    stream = b"".join(record + b"\0" for record in records)
    assert list(split_records(cut(stream, rng, 700), b"\0")) == records


@pytest.mark.parametrize("delimiter", [*DELIMITERS, b"\xff"])
def test_text_records_are_the_decoded_records(delimiter):
    rng = random.Random(repr(delimiter))
    words = ["a", "é", "ünï", "\r", "\n", "", "日本", delimiter.decode("utf-8", "replace")]
    for _ in range(200):
        records = [rng.choice(words) + rng.choice(words) for _ in range(rng.randint(0, 8))]
        stream = b"".join(r.encode() + delimiter for r in records)
        expected = [r.decode() for r in reference(stream, delimiter)]
        assert list(text_records(cut(stream, rng, 5), delimiter, 0)) == expected


def test_text_decode_error_names_the_offset_after_the_good_records():
    # the bad byte is in the second read; a multi-byte character is cut between reads
    chunks = [b"ok\n\xc3", b"\xa9\nfine\nbad\xff\nnever\n"]
    got = []
    with pytest.raises(OutputDecodeError, match="byte offset 14") as info:
        for record in text_records(chunks, b"\n", 3):
            got.append(record)
    assert got == ["ok", "é", "fine"] and "partition 3" in str(info.value)
    with pytest.raises(OutputDecodeError, match="byte offset 4"):
        list(text_records([b"one\n\xff"], b"\n", 0))  # in the unterminated last record


def test_encoded_records_are_each_element_and_its_delimiter():
    class Custom:
        def __str__(self):
            return "custom"

    rng = random.Random(3)
    cases = [
        ["a", "é", "", "日本"] * 1000,
        [b"\x00\xff", bytearray(b"ba"), b""] * 1000,
        ["text", b"bytes", bytearray(b"array"), 17, None, Custom()],
        ["x" * rng.randint(0, 3 * CHUNK) for _ in range(4)],  # larger than a piece
    ]
    for elements in cases:
        for delimiter in (b"\n", b"\r\n", b"\xff", None):
            expected = b"".join(
                (bytes(e) if isinstance(e, (bytes, bytearray)) else str(e).encode())
                + (delimiter or b"") for e in elements)
            pieces = list(encode_records(iter(elements), delimiter))
            assert b"".join(pieces) == expected
            assert all(pieces)


def test_encoded_records_come_in_pieces_of_about_a_chunk():
    pieces = list(encode_records((f"{n:09d}" for n in range(1_000_000)), b"\n"))
    assert b"".join(pieces) == b"".join(f"{n:09d}\n".encode() for n in range(1_000_000))
    assert len(pieces) < 40  # 10 MB: a piece is far more than one record
    assert max(len(piece) for piece in pieces) < 4 * CHUNK


def test_a_lone_surrogate_fails_as_the_element_would():
    with pytest.raises(UnicodeEncodeError):
        list(encode_records(["fine", "bad \udc80"], b"\n"))


# ---------------------------------------------------------------------------
# the attach stream's frames, over a real socket whose reads end where the sender's writes do

def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def read_frames(messages: list[bytes]) -> tuple[list[bytes], StderrTail]:
    """``attached_stdout`` over a socket that delivers ``messages`` one per read, then EOF."""
    reader, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def send():
        with sender:
            for message in messages:
                sender.sendall(message)

    writer = threading.Thread(target=send)
    writer.start()
    try:
        with reader:
            stderr = StderrTail()
            return list(attached_stdout(reader, stderr.add, CHUNK)), stderr
    finally:
        writer.join()


def test_frames_cut_anywhere_give_stdout_and_stderr():
    stream = (frame(1, b"out one\n") + frame(2, b"err one\n") + frame(1, b"") + frame(0, b"in?")
              + frame(7, b"unknown stream") + frame(1, b"out two\n") + frame(2, b"err two"))
    for size in (1, 3, 7, 8, 9, 16, len(stream)):
        messages = [stream[i:i + size] for i in range(0, len(stream), size)]
        stdout, stderr = read_frames(messages)
        assert b"".join(stdout) == b"out one\nout two\n", size
        assert stderr.text() == "err one\nerr two"


def test_a_frame_larger_than_a_read_and_a_stream_cut_in_a_frame():
    payload = bytes(range(256)) * (3 * CHUNK // 256)
    stream = frame(1, payload) + frame(2, b"late\n") + frame(1, b"tail")
    pieces = [stream[i:i + 65536] for i in range(0, len(stream), 65536)]
    stdout, stderr = read_frames(pieces)
    assert b"".join(stdout) == payload + b"tail" and stderr.text() == "late"
    assert max(len(piece) for piece in stdout) <= CHUNK
    # EOF in the middle of a frame (the engine went away): what came is kept
    stdout, _ = read_frames([frame(1, b"whole"), frame(1, b"cut short")[:-3]])
    assert b"".join(stdout) == b"wholecut sh"


def test_a_frame_over_the_bound_is_refused_before_its_bytes_are_read():
    from lofn._engine import FrameTooLarge

    reader, sender = socket.socketpair()
    with reader, sender:
        sender.sendall(frame(1, b"fine") + struct.pack(">BxxxL", 1, 1 << 30))
        stdout = attached_stdout(reader, StderrTail().add, CHUNK, max_frame=1 << 20)
        with pytest.raises(FrameTooLarge, match=f"a frame of {1 << 30} bytes"):
            list(stdout)
