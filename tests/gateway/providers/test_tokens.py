from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.tokens import IMAGE_TOKENS, RunningCount, count_prompt_tokens, count_tokens, estimate_margin, tokenize


def test_it_counts_words_punctuation_and_numbers_like_a_bpe_tokenizer():
    assert count_tokens("") == 0
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("I don't know") == 4
    assert count_tokens("12345678") == 3  # digits in groups of three


def test_it_splits_long_words_every_four_characters():
    assert tokenize("internationalization")[:2] == ["inte", "rnat"]
    assert count_tokens("internationalization") == 5


def test_it_counts_text_outside_ascii_per_character():
    assert count_tokens("你好世界") == 4


@given(st.text(max_size=300))
def test_pieces_rebuild_the_text_and_match_the_count(text):
    pieces = tokenize(text)
    assert "".join(pieces) == text
    assert len(pieces) == count_tokens(text)


@given(st.text(max_size=200), st.integers(min_value=0, max_value=80))
def test_a_prefix_of_whole_pieces_counts_as_that_many_tokens(text, n):
    pieces = tokenize(text)[:n]
    assert count_tokens("".join(pieces)) <= len(pieces)


def test_the_prompt_estimate_covers_messages_tools_and_images_and_is_above_the_count():
    payload = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    }
    without_image = {"messages": [payload["messages"][0], {"role": "user", "content": "What is in this picture?"}]}
    counted = count_prompt_tokens(payload)
    assert counted >= IMAGE_TOKENS + count_prompt_tokens(without_image)
    assert estimate_margin(counted) > 0  # holds assume more than we count: other tokenizers differ


def test_it_counts_legacy_prompts_and_embedding_inputs():
    assert count_prompt_tokens({"prompt": "Hello, world!"}) == 4
    assert count_prompt_tokens({"prompt": ["Hello", "world"]}) == 2
    assert count_prompt_tokens({"input": [[1, 2, 3], "Hello"]}) == 4
    assert estimate_margin(4) >= 1


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="ab '_1.\n\tsdmtlvre\u00e9", max_size=9),  # contractions, runs of spaces, digit groups
            st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
        ),
        max_size=30,
    )
)
def test_a_running_count_always_equals_the_count_of_the_whole_text(pieces):
    """What a stream under a cost cap counts chunk by chunk is what count_tokens says of everything relayed."""
    running = RunningCount()
    text = ""
    for piece in pieces:
        assert running.peek(piece) == count_tokens(text + piece)
        running.add(piece)
        text += piece
        assert running.tokens == count_tokens(text)


def test_a_running_count_handles_what_splits_words_and_spaces():
    running = RunningCount()
    for piece in ("hel", "lo", "  ", " wor", "ld", "'s", "x", "1234", "5", "abcdefghij", "klm"):
        running.add(piece)
    assert running.tokens == count_tokens("hello   world'sx12345abcdefghijklm")
