"""The sequence-aware two-tower learns the planted tastes and exports the shared form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.ingest import Dataset
from recsys.data.split import Split
from recsys.evaluation import evaluate
from recsys.models.popularity import PopularityModel
from recsys.models.seq_features import item_content, sequences, title_tokens, training_examples, user_histories
from recsys.models.seq_two_tower import SeqTwoTowerModel
from tests.model.heuristic import FLOORS

SMALL = {"epochs": 10, "batch_size": 256, "embedding_dim": 32, "max_len": 20}


@pytest.fixture(scope="module")
def seq_model(synthetic: Dataset, synthetic_split: Split) -> SeqTwoTowerModel:
    epochs: list[int] = []
    model = SeqTwoTowerModel(on_epoch_end=lambda epoch, logs, exported: epochs.append(epoch), **SMALL)
    model.fit(synthetic_split.train, synthetic.items)
    assert epochs == list(range(SMALL["epochs"]))
    return model


def test_seq_two_tower_beats_popularity(seq_model: SeqTwoTowerModel, synthetic: Dataset, synthetic_split: Split) -> None:
    pop = evaluate(PopularityModel().fit(synthetic_split.train, synthetic.items).export(), synthetic_split.test)
    deep = evaluate(seq_model.export(), synthetic_split.test)
    assert deep["ndcg_at_10"] > FLOORS["seq_two_tower"] * pop["ndcg_at_10"], deep["ndcg_at_10"] / pop["ndcg_at_10"]
    assert seq_model.history["loss"][-1] < seq_model.history["loss"][0]


def test_export_covers_every_user_and_catalogue_item(seq_model: SeqTwoTowerModel, synthetic: Dataset, synthetic_split: Split) -> None:
    model = seq_model.export()
    assert model.user_vectors.shape == (synthetic_split.train["user_id"].nunique(), SMALL["embedding_dim"])
    assert len(model.item_ids) == len(synthetic.items)
    assert np.allclose(np.linalg.norm(model.item_vectors, axis=1), 1.0, atol=1e-4)
    assert model.meta["family"] == "seq_two_tower" and model.meta["strategy"] == "default"
    top, _ = model.recommend(np.arange(len(model.user_ids)), 10)
    for user, row in enumerate(top):
        assert not set(row.tolist()) & set(model.seen(user).tolist())


def test_new_items_get_vectors_from_content(synthetic: Dataset, synthetic_split: Split) -> None:
    ids = np.sort(synthetic.items["item_id"].to_numpy().astype(str))
    content = item_content(synthetic.items, ids, trained=set(ids[:10]))
    assert content.has_id.sum() == 10 and content.has_id[0] == 0  # row 0 is padding
    assert (content.category[1:] > 0).all() and (content.price_bucket[1:] > 0).all()


def test_accidental_hits_are_masked(seq_model: SeqTwoTowerModel) -> None:
    import keras

    layer = seq_model.keras_model.remove_hits
    logits = keras.ops.convert_to_tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    out = np.asarray(layer(logits, keras.ops.eye(3), keras.ops.convert_to_tensor([7, 5, 7])))
    assert out[0, 2] < -1e3 and out[2, 0] < -1e3  # same id as the row's positive: masked
    assert np.allclose(np.diag(out), [1.0, 2.0, 3.0]) and out[0, 1] == 2.0


def test_the_user_tower_reads_the_whole_transformer_blocks_last_row(seq_model: SeqTwoTowerModel) -> None:
    """The tower runs attention and the feed-forward block for the last position only (the one it
    reads): the same vectors as the whole block over every position, its last row taken."""
    from keras import ops

    km, inputs = seq_model.keras_model, next(iter(seq_model.dataset()))
    history = inputs["history"][:, -SMALL["max_len"] :]
    mask = ops.not_equal(history, 0)
    fmask = ops.cast(ops.expand_dims(mask, -1), "float32")
    seq = km.item_id(history) + km.position(ops.arange(SMALL["max_len"]))
    seq = (seq + km.recency(ops.expand_dims(ops.cast(inputs["ages"], "float32"), -1))) * fmask
    x = km.norm1(seq + km.attention(seq, seq, attention_mask=ops.logical_and(ops.expand_dims(mask, 1), ops.expand_dims(mask, 2))))
    x = km.norm2(x + km.ffn(x)) * fmask  # every position, as the block was written first
    lmask = ops.cast(ops.expand_dims(ops.not_equal(inputs["history"], 0), -1), "float32")
    bag = ops.sum(km.item_id(inputs["history"]) * lmask, axis=1) / (ops.sum(lmask, axis=1) + 1.0)
    whole = ops.normalize(km.user_mlp(ops.concatenate([x[:, -1, :], bag, km.user_id(inputs["user"])], axis=-1)), axis=-1)
    np.testing.assert_allclose(np.asarray(km.embed_users(inputs)), np.asarray(whole), atol=1e-5)
    assert float(ops.min(ops.sum(fmask, axis=(1, 2)))) < SMALL["max_len"]  # some histories are padded: the mask is exercised


def test_pipeline_ratio_is_measured(seq_model: SeqTwoTowerModel) -> None:
    speed = seq_model.pipeline_ratio(steps=3, rounds=2)
    assert speed["pipeline"] > 0 and speed["cached"] > 0 and speed["ratio"] > 0


def _one_user(days: int = 5) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    items = [f"i{k:02d}" for k in range(days)]  # sorted ids = time order
    frame = pd.DataFrame({"user_id": "u", "item_id": items, "timestamp": pd.to_datetime("2024-01-01") + pd.to_timedelta(np.arange(days), "D")})
    return frame, np.array(["u"]), np.array(sorted(items))


def test_next_item_examples_are_aged_from_their_last_history_event() -> None:
    frame, users, item_ids = _one_user()
    ex = training_examples(frame, users, item_ids, length=3, new_items_only=True, horizon=0.0)
    assert ex["item"].tolist() == [2, 3, 4, 5]  # every event after the first; row 0 is padding
    assert ex["history"][1].tolist() == [0, 1, 2]  # target i2 (day 2) sees i0, i1
    assert np.allclose(ex["ages"][1], [0.0, np.log1p(1.0), 0.0])  # i1 is the anchor: age 0, as at inference
    assert ex["history"][3].tolist() == [2, 3, 4]  # window of the last 3


def test_horizon_cuts_histories_before_the_target_but_keeps_one_event() -> None:
    frame, users, item_ids = _one_user(days=20)
    ex = training_examples(frame, users, item_ids, length=20, new_items_only=True, horizon=0.5, seed=1)
    last = ex["history"].max(axis=1)  # items are numbered in time order here
    assert (last < ex["item"]).all() and (last >= 1).all()
    assert (ex["item"] - 1 - last).max() > 1  # some histories end well before their target
    assert (ex["item"] - 1 - last).max() <= 10  # never more than horizon * 20 events back
    assert np.allclose(ex["ages"][np.arange(len(last)), -1], 0.0)  # ages count from the anchor


def test_long_histories_age_only_their_recent_part() -> None:
    frame, users, item_ids = _one_user(days=6)
    ex = training_examples(frame, users, item_ids, length=4, new_items_only=True, horizon=0.0, aged=2)
    assert ex["history"].shape == (5, 4) and ex["ages"].shape == (5, 2)
    assert ex["history"][4].tolist() == [2, 3, 4, 5]  # target i5 sees its last 4 events
    assert np.allclose(ex["ages"][4], [np.log1p(1.0), 0.0])  # ages of the 2 most recent
    hist = user_histories(sequences(frame, users, item_ids), length=4, aged=2)
    assert hist["history"][0].tolist() == [3, 4, 5, 6] and hist["ages"].shape == (1, 2)


def testtitle_tokens_carry_release_year_and_decade() -> None:
    assert title_tokens("Toy Story (1995)") == ["1995", "1990s", "toy", "story"]
    assert title_tokens("SET OF 3 CAKE TINS") == ["set", "of", "cake", "tins"] and title_tokens(None) == []
