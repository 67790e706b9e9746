"""Injected shifts change only what comes after their start, and change it the way they say."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.data.ingest import Dataset
from recsys.schemas import CATEGORY_COL, ITEM_COL, TS_COL, USER_COL
from recsys.simulation.shifts import inject

AT = "2024-03-01"


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    after = frame[TS_COL] >= pd.Timestamp(AT)
    return frame[~after].reset_index(drop=True), frame[after].reset_index(drop=True)


@pytest.mark.parametrize("kind", ["new_users", "category", "popularity", "request_mix"])
def test_shift_leaves_the_past_alone(synthetic: Dataset, kind: str) -> None:
    shifted = inject(synthetic.interactions, synthetic.items, kind, AT, 0.5)
    before, _ = _split(synthetic.interactions)
    shifted_before, shifted_after = _split(shifted)
    pd.testing.assert_frame_equal(shifted_before, before)
    assert 0 < len(shifted_after)
    assert inject(synthetic.interactions, synthetic.items, kind, AT, 0.5).equals(shifted)  # seeded


def test_new_users_rekey_a_share_of_customers(synthetic: Dataset) -> None:
    shifted = inject(synthetic.interactions, synthetic.items, "new_users", AT, 0.6)
    _, after = _split(shifted)
    _, original_after = _split(synthetic.interactions)
    new = after[USER_COL].str.startswith("new-")
    assert len(after) == len(original_after)  # same events, other ids
    assert 0.45 < new.mean() < 0.75  # about 60% of customers, so about 60% of their events
    assert set(after.loc[new, USER_COL].str.removeprefix("new-")) <= set(synthetic.interactions[USER_COL])


def test_category_shift_keeps_only_some_categories(synthetic: Dataset) -> None:
    shifted = inject(synthetic.interactions, synthetic.items, "category", AT, 0.25)
    _, after = _split(shifted)
    categories = after[ITEM_COL].map(synthetic.items.set_index(ITEM_COL)[CATEGORY_COL])
    assert categories.nunique() == round(0.25 * synthetic.items[CATEGORY_COL].nunique())


def test_popularity_shift_stops_the_bestsellers(synthetic: Dataset) -> None:
    before, _ = _split(synthetic.interactions)
    top = before[ITEM_COL].value_counts().index[:20]
    _, after = _split(inject(synthetic.interactions, synthetic.items, "popularity", AT, 0.1))
    assert not after[ITEM_COL].isin(top).any()


def test_request_mix_keeps_light_users(synthetic: Dataset) -> None:
    before, _ = _split(synthetic.interactions)
    activity = before[USER_COL].value_counts()
    _, after = _split(inject(synthetic.interactions, synthetic.items, "request_mix", AT, 0.5))
    assert activity.reindex(after[USER_COL].unique()).fillna(0).max() <= activity.median()


def test_bad_shift_requests_are_refused(synthetic: Dataset) -> None:
    with pytest.raises(ValueError, match="unknown shift"):
        inject(synthetic.interactions, synthetic.items, "weather", AT, 0.5)
    with pytest.raises(ValueError, match="share"):
        inject(synthetic.interactions, synthetic.items, "new_users", AT, 1.5)
    with pytest.raises(ValueError, match="nothing to shift"):
        inject(synthetic.interactions, synthetic.items, "new_users", "2099-01-01", 0.5)
