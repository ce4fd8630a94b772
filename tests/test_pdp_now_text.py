"""input.now as the PDP writes it for every evaluated decision: the date and time of day
made once per second (pdp.domain.policy_input.now_text) must be rfc3339()'s text exactly,
whatever the time, at the edges of a millisecond and of a second included."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pdp.domain.policy_input import now_text
from pdp.plumbing.timestamps import rfc3339

edges = st.sampled_from(
    [0.0, 0.0005, 0.0009995, 0.4995, 0.9995, 0.9999994999, 0.9999995, 0.999999999]
)


@settings(max_examples=2000, deadline=None)
@given(
    st.floats(min_value=0, max_value=2e10)
    | st.integers(0, 2 * 10**10).flatmap(lambda whole: edges.map(lambda fraction: whole + fraction))
)
@example(1_764_892_800.9999995)
@example(0.0)
def test_now_text_is_rfc3339(seconds):
    assert now_text(seconds) == rfc3339(seconds)


def test_times_in_turn_of_other_seconds():
    # the remembered second is another one's for each: nothing carried from the last
    for seconds in (1_700_000_000.25, 1_700_000_001.5, 1_699_999_999.999, 1_700_000_000.0):
        assert now_text(seconds) == rfc3339(seconds)


def test_what_rfc3339_refuses_is_refused():
    for seconds in (math.nan, math.inf, -1.5):
        try:
            expected = rfc3339(seconds)
        except (ValueError, OverflowError, OSError) as exc:
            try:
                now_text(seconds)
            except type(exc):
                continue
            raise AssertionError(f"now_text({seconds}) did not refuse") from None
        assert now_text(seconds) == expected
