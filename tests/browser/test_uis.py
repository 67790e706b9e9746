"""The journeys our users make in each UI, in a real browser against the real platform."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pandas as pd
from playwright.sync_api import Page, expect

from recsys import platform
from recsys.data.synthetic import make_synthetic
from recsys.schemas import TS_COL
from recsys.simulation.traffic import visits
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


def test_mlflow_champion_run_shows_its_blessing_chart_with_intervals(platform_up: Platform, page: Page, screenshot) -> None:
    settings = platform_up.settings
    base = platform.mlflow_server(settings).url
    api = f"{base}/api/2.0/mlflow"
    # `recsys up` blessed its first champion against popularity: the champion's run holds the chart
    alias = httpx.get(f"{api}/registered-models/alias", params={"name": settings.registered_model, "alias": settings.champion_alias})
    run_id = alias.json()["model_version"]["run_id"]
    run = httpx.get(f"{api}/runs/get", params={"run_id": run_id}).json()["run"]
    listed = httpx.get(f"{api}/artifacts/list", params={"run_id": run_id, "path": "blessing"}).json()["files"]
    assert {f["path"] for f in listed} == {"blessing/ndcg_at_10.png", "blessing/ndcg_at_10.json"}

    def artifact(path: str) -> bytes:
        return httpx.get(f"{base}/get-artifact", params={"path": path, "run_uuid": run_id}).raise_for_status().content

    chart = json.loads(artifact("blessing/ndcg_at_10.json"))
    drawn = {bar["role"]: bar for bar in chart["bars"]}
    assert set(drawn) == {"candidate", "baseline"} and drawn["candidate"]["family"] == settings.first_champion_family
    logged = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    # the candidate's bar and whiskers are the metric and interval its run logged, to the last digit
    assert [drawn["candidate"][k] for k in ("value", "lo", "hi")] == [logged[f"test_ndcg_at_10{s}"] for s in ("", "_lo", "_hi")]
    assert chart["blessed"] and chart["threshold"] == drawn["baseline"]["value"] < drawn["candidate"]["value"]
    width = int.from_bytes(artifact("blessing/ndcg_at_10.png")[16:20], "big")  # the PNG header's width

    page.goto(f"{base}/#/experiments/{run['info']['experiment_id']}/runs/{run_id}")
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("blessing", exact=True).click()
    page.get_by_text("ndcg_at_10.png", exact=True).click()
    figure = page.get_by_role("img", name="blessing/ndcg_at_10.png")
    expect(figure).to_be_visible()
    expect(page.get_by_text("blessing/ndcg_at_10.png", exact=True)).to_be_visible()  # the viewer's title
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=figure.element_handle())
    assert figure.evaluate("img => img.naturalWidth") == width  # the logged PNG, drawn whole
    close_assistant = page.get_by_role("button", name=re.compile("close", re.IGNORECASE))
    if close_assistant.count():
        close_assistant.first.click()
    screenshot(page, "mlflow-ndcg-chart")


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


def test_evidently_challengers_tab_plots_each_arm_of_a_live_canary(platform_up: Platform, page: Page, screenshot) -> None:
    """The champion's own version deployed as its canary and shadow (an A/A check) through the CLI:
    the service answers both arms, the shadow ranks exactly the champion's lists, and after two
    monitored windows the dashboard plots each arm's online hit rate and the shadow's overlap."""
    settings = platform_up.settings
    base = platform.mlflow_server(settings).url
    alias = httpx.get(f"{base}/api/2.0/mlflow/registered-models/alias", params={"name": settings.registered_model, "alias": settings.champion_alias})
    champion = alias.json()["model_version"]["version"]
    deployed = platform_up.cli("challenge", champion)
    assert deployed.returncode == 0 and "/admin/reload: 200" in deployed.stdout, deployed.stdout + deployed.stderr[-2000:]
    try:
        before = sum(1 for _ in settings.request_log.open())
        times = visits(pd.read_parquet(settings.dataset))[TS_COL]
        for start in (times.iloc[-600], times.iloc[-400]):  # two windows before the one `platform_up` replayed
            for command in (("simulate", "--requests", "200", "--since", start.isoformat()), ("monitor", "--window", "200")):
                done = platform_up.cli(*command)
                assert done.returncode == 0, done.stderr[-2000:]
        lines = [json.loads(line) for line in settings.request_log.read_text().splitlines()[before:]]
        assert len(lines) == 400 and {line["arm"] for line in lines} == {"champion", "canary"}
        assert all(line["shadow_items"] == line["items"] for line in lines)  # the same version ranks the same list
        page.goto(platform.evidently_ui(settings).url)
        page.get_by_role("link", name="recsys", exact=True).click()
        title = page.get_by_text("Online hit rate per arm (canary vs champion)").first
        expect(title).to_be_visible(timeout=30_000)  # the UI draws every tab's panels on one page
        title.evaluate("title => title.scrollIntoView({block: 'start'})")
        expect(page.get_by_text("canary", exact=True).first).to_be_visible()  # the plotted series' legends
        expect(page.get_by_text("overlap@k", exact=True).first).to_be_visible()
        page.evaluate("window.scrollBy(0, -40)")
        screenshot(page, "evidently-challengers")
    finally:
        withdrawn = platform_up.cli("withdraw", "--reason", "end of the browser test")
        assert withdrawn.returncode == 0, withdrawn.stderr[-2000:]
