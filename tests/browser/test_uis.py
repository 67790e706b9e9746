"""The journeys our users make in each UI, in a real browser against the real platform."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from recsys import platform
from recsys.data.synthetic import make_synthetic
from recsys.validation import validate_dataset
from tests.browser.conftest import Platform


def test_prefect_custom_run_of_training_reaches_completed(platform_up: Platform, page: Page, screenshot) -> None:
    base = platform.prefect_server(platform_up.settings).url
    page.goto(f"{base}/deployments")
    page.get_by_role("link", name="train", exact=True).first.click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run", exact=True).click()
    expect(page.get_by_text("family (Optional)")).to_be_visible()
    epochs = page.locator("div.p-label", has_text="epochs (Optional)")
    epochs.get_by_role("button", name="int").click()
    epochs.locator("input").fill("3")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"tab=Runs"))  # back on the deployment, the new run listed
    page.locator("a[href*='/runs/flow-run/']").first.click()
    expect(page).to_have_url(re.compile(r"/runs/flow-run/"))
    expect(page.get_by_text("Completed").first).to_be_visible(timeout=240_000)
    screenshot(page, "prefect-custom-run")
    run_id = page.url.rsplit("/", 1)[-1]
    run = httpx.get(f"{base}/api/flow_runs/{run_id}").json()
    assert run["parameters"]["epochs"] == 3 and run["state"]["type"] == "COMPLETED"


def test_mlflow_compare_two_runs_shows_both_ndcg(platform_up: Platform, page: Page, screenshot) -> None:
    base = platform.mlflow_server(platform_up.settings).url
    experiment = httpx.get(f"{base}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "recsys"}).json()
    page.goto(f"{base}/#/experiments/{experiment['experiment']['experiment_id']}/runs")
    compared = (f"{platform_up.settings.first_champion_family}-shop", "popularity-shop")  # both from `recsys up`
    for name in compared:
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True)).first
        row.get_by_role("checkbox", name=re.compile("toggle row selection")).check()
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_text("Comparing 2 Runs")).to_be_visible()
    close_assistant = page.get_by_role("button", name=re.compile("close", re.IGNORECASE))
    if close_assistant.count():
        close_assistant.first.click()
    # The metrics table is two virtual grids 300px high (names, values) that scroll together;
    # the wheel moves the names a beat behind the values, so scroll both to the same place.
    ndcg = page.get_by_text("test_ndcg_at_10", exact=True)
    page.locator("[role=grid] a", has_text="test_coverage").first.scroll_into_view_if_needed()
    table = page.locator("[role=grid] a", has_text="test_coverage").first.evaluate_handle(
        """label => {
            let box = label.closest('[role=grid]').parentElement;
            while (box.querySelectorAll('[role=grid]').length < 2) box = box.parentElement;
            return box;
        }"""
    )
    for step in range(1, 60):
        if ndcg.count():
            break
        table.evaluate("(box, y) => box.querySelectorAll('[role=grid]').forEach(g => { g.scrollTop = y; })", step * 45)
        page.wait_for_timeout(100)
    expect(ndcg.first).to_be_visible()
    # MLflow 3.17's compare table draws its value column one row off its name column (seen
    # here: n_users' 300 beside test_map_at_20_lo), so check that both runs' logged NDCG@10
    # values are on show in the table rather than reading them off the label's row.
    search = {"experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 100}
    newest = {}  # the table lists newest first, so the rows checked above are each name's newest run
    for run in httpx.post(f"{base}/api/2.0/mlflow/runs/search", json=search).json()["runs"]:
        name = run["info"]["run_name"]
        if name in compared and run["info"]["start_time"] > newest.get(name, {"info": {"start_time": 0}})["info"]["start_time"]:
            newest[name] = run
    runs = list(newest.values())
    logged = {f"{m['value']:.3f}".rstrip("0") for r in runs for m in r["data"]["metrics"] if m["key"] == "test_ndcg_at_10"}
    shown = set(table.evaluate("box => [...box.querySelectorAll('[role=grid] div')].map(c => c.innerText.trim())"))
    assert len(logged) == 2 and logged <= shown, (logged, sorted(shown)[:40])
    screenshot(page, "mlflow-compare")


def test_swagger_ui_executes_recommend(platform_up: Platform, page: Page, screenshot) -> None:
    page.goto(platform.bentoml_server(platform_up.settings).url)
    operation = page.locator(".opblock").filter(has=page.locator('[data-path="/recommend"]')).first
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator("textarea.body-param__text").fill('{"user_id": "u1", "k": 5}')
    operation.get_by_role("button", name="Execute").click()
    body = operation.locator(".responses-wrapper .live-responses-table .highlight-code").first
    expect(body).to_contain_text('"item_id"', timeout=30_000)
    body.scroll_into_view_if_needed()
    screenshot(page, "bentoml-swagger")
    assert body.inner_text().count('"item_id"') == 5


def test_evidently_project_shows_the_drift_dashboard(platform_up: Platform, page: Page, screenshot) -> None:
    page.goto(platform.evidently_ui(platform_up.settings).url)
    page.get_by_role("link", name="recsys", exact=True).click()
    expect(page.get_by_text("Share of drifted request features").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("drift share", exact=True).first).to_be_visible()  # the plotted series' legend
    screenshot(page, "evidently-dashboard")


def test_failing_gx_data_docs_page_names_the_failed_expectation(page: Page, tmp_path: Path, screenshot) -> None:
    shop = make_synthetic()
    broken = shop.interactions.copy()
    broken.loc[:9, "user_id"] = None
    result = validate_dataset(broken, shop.items, tmp_path / "gx")
    assert not result.success and result.docs_index is not None
    page.goto(result.docs_index.as_uri())
    expect(page.get_by_text("Data Docs").first).to_be_visible()
    # The index's results table is drawn by scripts GX loads from a CDN (no internet here):
    # open the interactions validation page it links to straight from the docs folder.
    (failed_page,) = (result.docs_index.parent / "validations" / "interactions").rglob("*.html")
    page.goto(failed_page.as_uri())
    expect(page.get_by_text("Failed").first).to_be_visible()
    expect(page.get_by_text("user_id").first).to_be_visible()
    expect(page.get_by_text("expect_column_values_to_not_be_null(user_id)").first).to_be_visible()
    expect(page.get_by_text("10 unexpected values found").first).to_be_visible()
    screenshot(page, "gx-data-docs-failed")
