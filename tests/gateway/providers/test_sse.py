from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.providers.sse import SSEEvent, SSEParser

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"

OPENAI_STREAM = (
    b'data: {"id":"1","choices":[{"delta":{"content":"h\xc3\xa9llo"}}]}\n\n'
    b": keep-alive comment\n\n"
    b'data: {"id":"1","choices":[{"delta":{"content":" world"}}]}\n\n'
    b"data: [DONE]\n\n"
)


def parse_in_pieces(raw: bytes, cuts: list[int]) -> tuple[list[SSEEvent], bool]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    start = 0
    for cut in sorted(set(cuts)) + [len(raw)]:
        events.extend(parser.feed(raw[start:cut]))
        start = cut
    rest = parser.finish()
    return events + ([rest] if rest else []), rest is not None


def test_it_parses_openai_frames_and_skips_comments():
    events, truncated = parse_in_pieces(OPENAI_STREAM, [])
    assert [e.data for e in events][-1] == b"[DONE]"
    assert len(events) == 3 and not truncated
    assert events[0].event == ""


@given(st.lists(st.integers(min_value=0, max_value=len(OPENAI_STREAM)), max_size=12))
def test_any_chunk_boundaries_give_the_same_events(cuts):
    assert parse_in_pieces(OPENAI_STREAM, cuts) == parse_in_pieces(OPENAI_STREAM, [])


@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=20))
def test_crlf_line_endings_split_anywhere_give_the_same_events(cuts):
    raw = (FIXTURES / "stream_tool_use.sse").read_bytes()
    crlf = raw.replace(b"\n", b"\r\n")
    expected, _ = parse_in_pieces(raw, [])
    assert parse_in_pieces(crlf, [c % len(crlf) for c in cuts]) == (expected, False)
    assert [e.event for e in expected][:2] == ["message_start", "content_block_start"]


def test_it_joins_multi_line_data_and_reads_the_event_name():
    events, _ = parse_in_pieces(b"event: update\ndata: one\ndata: two\nid: 7\n\n", [3, 17])
    assert events == [SSEEvent("update", b"one\ntwo")]


def test_a_stream_cut_inside_an_event_is_reported_truncated():
    events, truncated = parse_in_pieces(b'data: {"a": 1}\n\ndata: {"b"', [5])
    assert truncated
    assert events[0].data == b'{"a": 1}' and not events[0].partial
    assert events[1] == SSEEvent("", b'{"b"', partial=True)


def test_a_last_done_without_its_blank_line_is_still_seen():
    events, _ = parse_in_pieces(b'data: {"a": 1}\n\ndata: [DONE]', [])
    assert events[-1].data == b"[DONE]"
