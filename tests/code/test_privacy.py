"""The pieces of an erasure alone: a model less a user, a store less a user, a log less a
user's lines while it is being written, tombstones at load, and `recsys forget` with no model."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from recsys import keys, tombstones
from recsys.app.cli import app
from recsys.data import store
from recsys.data.ingest import load_dataset
from recsys.data.synthetic import make_synthetic
from recsys.models.base import EmbeddingModel
from recsys.schemas import USER_COL
from recsys.serving.logic import RequestLog, drop_lines, pseudonymise
from recsys.settings import Settings
from tests.conftest import log_record


def test_a_model_less_a_user_keeps_everyone_else_row_for_row() -> None:
    model = EmbeddingModel(
        np.array(["a", "b", "c"]),
        np.array(["x", "y"]),
        np.arange(6, dtype=np.float32).reshape(3, 2),
        np.ones((2, 2), np.float32),
        np.array([2.0, 1.0], np.float32),
        np.array([0, 2, 3, 4]),
        np.array([0, 1, 1, 0], np.int32),
    )
    less = model.without_users({"b"})
    assert less.user_ids.tolist() == ["a", "c"] and less.user_index == {"a": 0, "c": 1}
    assert less.user_vectors.tolist() == [[0, 1], [4, 5]]  # rows of a and c
    assert less.seen(0).tolist() == [0, 1] and less.seen(1).tolist() == [0]  # b's one seen item went with it
    assert less.item_vectors is model.item_vectors and less.popularity is model.popularity


def test_removing_a_user_rewrites_only_the_files_that_hold_them(tmp_path: Path) -> None:
    gone = "u7"
    early = make_synthetic(n_users=60, n_items=30, days=60, seed=1).interactions
    later = make_synthetic(n_users=60, n_items=30, days=60, start="2024-06-01", seed=2).interactions
    shop = pd.concat([early, later[later[USER_COL] != gone]], ignore_index=True)  # months without them too
    store.append(tmp_path, shop)
    files = store.snapshot(tmp_path).files
    holds = {f for f in files if gone in set(store.snapshot(tmp_path).read(files=[f])[USER_COL])}
    before = {f: (tmp_path / f).stat().st_mtime_ns for f in files}
    assert 0 < len(holds) < len(files)  # some months without them: those must stay untouched
    assert store.remove_users(tmp_path, {gone}) == int((shop[USER_COL] == gone).sum())
    after = store.snapshot(tmp_path)
    assert gone not in set(after.read()[USER_COL]) and after.rows == len(shop) - int((shop[USER_COL] == gone).sum())
    assert all((tmp_path / f).stat().st_mtime_ns == before[f] for f in set(files) - holds)
    assert not list(tmp_path.rglob(".*.tmp")) and store.remove_users(tmp_path, {gone}) == 0


def test_dropping_lines_while_workers_append_loses_no_one_elses_line(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "requests.jsonl"
    writers = [RequestLog(path) for _ in range(3)]  # three "worker processes", each with its own descriptor
    per_thread = 1500

    def write(n: int) -> None:
        for i in range(per_thread):
            writers[n % 3].append(log_record(f"{n}-{i}", "gone" if i % 10 == 0 else "kept"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    dropped = 0
    while any(t.is_alive() for t in threads):
        dropped += drop_lines(path, b'"gone"')
    for t in threads:
        t.join()
    dropped += drop_lines(path, b'"gone"')
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert dropped == 6 * per_thread // 10 and len(lines) == 6 * per_thread - dropped
    assert all(r["user_id"] == "kept" for r in lines)
    writers[0].append(log_record("last", "after"))  # a writer of a replaced file appends to the new one
    assert json.loads(path.read_text().splitlines()[-1])["user_id"] == "after"
    assert drop_lines(tmp_path / "none.jsonl", b"x") == 0


def test_tombstoned_users_never_load_from_a_read_only_source(settings: Settings, tmp_path: Path) -> None:
    data = make_synthetic(n_users=50, n_items=20, seed=2)
    source = tmp_path / "export.csv"
    data.interactions.to_csv(source, index=False)
    assert "u3" in set(load_dataset(str(source), tmp_path).interactions[USER_COL])
    listed = tombstones.path_of(settings)
    tombstones.add(listed, tombstones.subject_hash("u3", keys.audit_key(settings)))
    loaded = load_dataset(str(source), tmp_path).interactions
    assert "u3" not in set(loaded[USER_COL]) and len(loaded) == int((data.interactions[USER_COL] != "u3").sum())
    assert "u3" in tombstones.Tombstones.of(settings) and "u4" not in tombstones.Tombstones.of(settings)
    assert "u3" not in listed.read_text()  # only the keyed hash is listed


def test_forget_from_the_cli_without_a_champion_erases_data_and_logs_and_says_so(settings: Settings) -> None:
    root = settings.datasets_dir / "shop"
    data = make_synthetic(n_users=40, n_items=20, seed=4)
    store.write_items(root, data.items)
    store.append(root, data.interactions)
    log = RequestLog(settings.request_log)
    for user in ("u5", "u6", "u5"):
        log.append(log_record(user, pseudonymise(user, keys.log_key(settings))))
    result = CliRunner().invoke(app, ["forget", "u5"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    rows = int((data.interactions[USER_COL] == "u5").sum())
    assert f"removed {rows} stored interactions, 2 request and 0 feedback log lines, 0 model vectors" in text
    assert "no champion yet: no model version registered" in text
    assert settings.request_log.read_text().count("\n") == 1 and "u5" not in set(load_dataset(str(root)).interactions[USER_COL])
    entry = json.loads(settings.audit_log.read_text())
    assert entry["subject"] == tombstones.subject_hash("u5", keys.audit_key(settings)) and entry["removed"]["store_rows"] == rows
    assert entry["model_version"] is None and pd.Timestamp(entry["at"])
    again = CliRunner().invoke(app, ["forget", "u5"])  # idempotent: nothing left, audited as zeros
    assert again.exit_code == 0 and json.loads(settings.audit_log.read_text().splitlines()[-1])["removed"]["store_rows"] == 0
