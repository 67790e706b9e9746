"""`recsys`: the command line for people (the Makefile calls the same commands).

`up`/`down`/`status` manage the local platform (recsys.app.stack over recsys.platform). `synth`
writes a synthetic dataset store of any size; `forget` erases a user (recsys.privacy). `train`,
`promote`, `serve` and `simulate` are thin calls into the library against the running platform;
`demo`, `loop` and `monitor` run in a child process (`python -m recsys.app.demo`,
`python -m flows.run monitor`), so the command itself starts fast, never imports Prefect, and
each child starts with the platform's environment. A command that needs a server which is not
running says so, and how to start it, instead of a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import httpx
import typer
from rich.console import Console
from rich.table import Table

from recsys import keys, platform
from recsys.app import stack
from recsys.models import families
from recsys.settings import Settings, get_settings

app = typer.Typer(help="recsys: an MLOps-managed recommender (Prefect, GX, Keras, MLflow, BentoML, Evidently).", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)

#: How an error names each server.
SERVER_NAMES = {"prefect": "Prefect", "mlflow": "MLflow", "bentoml": "The recommendation service", "evidently": "The Evidently UI"}


def fail(message: str) -> None:
    """Print `message` as an error and leave with exit code 1."""
    errors.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(1)


def require(spec: platform.ServerSpec) -> None:
    """Stop with a clear message unless `spec` answers its health check."""
    if not platform.is_healthy(spec.health_url):
        fail(f"{SERVER_NAMES.get(spec.name, spec.title)} is not reachable at {spec.url}; start it with `recsys up`")


def require_tracking(settings: Settings) -> str:
    """The tracking URI of the platform; an MLflow server behind it must answer."""
    uri = platform.platform_tracking_uri(settings)
    if uri.startswith("http") and not platform.is_healthy(f"{uri.rstrip('/')}/health"):
        fail(f"MLflow is not reachable at {uri}; start it with `recsys up`")
    return uri


def use_platform(settings: Settings) -> Settings:
    """Settings whose MLflow tracking goes to the platform, for work done in this process."""
    uri = require_tracking(settings)
    os.environ.update({"MLFLOW_TRACKING_URI": uri, "RECSYS_MLFLOW_TRACKING_URI": uri})
    get_settings.cache_clear()
    return get_settings()


def claim(settings: Settings, server_specs: list[platform.ServerSpec]) -> None:
    """Stop with the holder's name (and how to stop it) unless every port these servers need is this home's."""
    try:
        platform.claim_ports(server_specs, settings)
    except platform.PortTaken as taken:
        fail(str(taken))


def _demo_env() -> dict[str, str]:
    settings = get_settings()
    env = {**os.environ, **platform.server_env(settings)}
    if settings.mlflow_tracking_uri is None:  # the demo tracks through the MLflow server (its UI)
        env["RECSYS_MLFLOW_TRACKING_URI"] = platform.mlflow_server(settings).url
        env["MLFLOW_TRACKING_URI"] = env["RECSYS_MLFLOW_TRACKING_URI"]
    return env


@app.command()
def demo() -> None:
    """Run the whole loop on Online Retail with local servers, and print where to look."""
    settings = get_settings()
    claim(settings, [platform.prefect_server(settings), platform.mlflow_server(settings), platform.bentoml_server(settings)])
    raise typer.Exit(subprocess.call([sys.executable, "-m", "recsys.app.demo"], env=_demo_env()))


@app.command()
def up(
    train_first: Annotated[
        bool, typer.Option("--train-first/--no-train-first", help="Without a champion, run the pipeline once so the service has a model")
    ] = True,
) -> None:
    """Start every server on 127.0.0.1 (Prefect, flow runner, MLflow, Evidently, BentoML); reuse running ones."""
    settings = get_settings()
    with console.status("starting the platform") as status:

        def step(name: str, state: str) -> None:
            status.update(f"{name}: {state}")
            if state in ("started", "running", "done") or state.startswith("skipped"):
                console.print(f"  [green]✓[/] {name:10s} {state}")

        try:
            report = stack.up(settings, step, train_first)
        except (RuntimeError, TimeoutError, httpx.HTTPError) as error:
            fail(str(error))
    console.print(f"platform up in {report.seconds:.0f}s; logs in {settings.run_dir}")
    show_status(settings)
    if report.champion is None and report.trained_first:
        console.print(
            f"[yellow]no champion yet[/]: the first {settings.first_champion_family} candidate was not blessed "
            f"(see {platform.log_path(settings, 'first-champion')}); run the `pipeline` deployment (Prefect UI) "
            "with another family, or set RECSYS_FIRST_CHAMPION_FAMILY, then `recsys serve`"
        )
    elif report.champion is None:
        console.print("[yellow]no champion yet[/]: run the `pipeline` deployment (Prefect UI) or `recsys train`, then `recsys serve`")


@app.command()
def down(
    home: Annotated[Path | None, typer.Option(help="Stop only the servers of this RECSYS_HOME (default: of every home)")] = None,
) -> None:
    """Stop every server that recsys started (`up`, `demo`, `loop`), under any home, and nothing else."""
    settings = get_settings()
    if home is None:
        stopped = stack.down_all(settings)
    else:
        stopped = {home.resolve(): stack.down(settings.model_copy(update={"home": home.resolve()}))}
    for where, names in stopped.items():
        if names:
            console.print(f"stopped {', '.join(names)} of {where}")
    if not any(stopped.values()):
        console.print("nothing to stop")


def show_status(settings: Settings) -> bool:
    """Print a table of the servers, their URLs and pids; True if all are up."""
    table = Table("server", "state", "pid", "log", title=f"logs in {settings.run_dir}")
    table.add_column("open", overflow="fold")  # a URL is never cut short, whatever the width
    all_up = True
    for spec in stack.specs(settings):
        up_now = platform.is_up(spec, settings)
        all_up &= up_now
        pid = platform.running_pid(settings, spec.name)
        table.add_row(spec.name, "[green]up[/]" if up_now else "[red]down[/]", str(pid or "-"), platform.log_path(settings, spec.name).name, spec.url)
    console.print(table)
    for spec in stack.specs(settings):
        if conflict := platform.port_conflict(spec, settings):
            console.print(f"[yellow]note:[/] {conflict}")
    docs = settings.gx_dir.resolve() / "index.html"
    console.print(f"GX data docs: {docs.as_uri() if docs.exists() else 'none yet (written by the validate flow)'}")
    for name, configured in ((keys.LOG_KEY, settings.log_key), (keys.ADMIN_TOKEN, settings.admin_token), (keys.AUDIT_KEY, settings.audit_key)):
        path = keys.secrets_dir(settings) / name
        where = "set in the environment" if configured is not None else (str(path) if path.exists() else f"{path} (made on first use)")
        console.print(f"{name}: {where}")
    return all_up


@app.command()
def status() -> None:
    """Say which servers are up, where to open them, and their pids and logs; exit 1 if any is down."""
    raise typer.Exit(0 if show_status(get_settings()) else 1)


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="online-retail, ml-100k, ml-latest-small or a .csv/.parquet path")] = "",
    family: Annotated[Literal[families.NAMES], typer.Option(help="The model family (refused before any data loads if unknown)")] = "two_tower",  # type: ignore[valid-type]
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: RECSYS_EPOCHS)")] = None,
    train_until: Annotated[str | None, typer.Option(help="Only interactions before this date")] = None,
) -> None:
    """Gate the data with GX, train one model with a progress bar, log and register it in MLflow."""
    settings = use_platform(get_settings())
    from recsys.data.ingest import load_dataset
    from recsys.data.split import temporal_user_split
    from recsys.progress import EpochProgress
    from recsys.training import train as fit
    from recsys.validation import validate_dataset

    name = dataset or settings.dataset
    with console.status(f"loading {name} and running the GX gate"):
        data = load_dataset(name, settings.shared_data_dir, train_until)
        gate = validate_dataset(data.interactions, data.items, settings.gx_dir)
    if not gate.success:
        fail("the GX gate failed:\n  " + "\n  ".join(gate.failed) + f"\ndata docs: {gate.docs_index}")
    validation = {"result_id": gate.result_id, "success": True}
    with EpochProgress(epochs or settings.epochs, f"{family} on {data.name}", console) as bar:
        result = fit(
            data,
            temporal_user_split(data.interactions),
            settings,
            family,
            validation,
            families.by_name(family).candidate,
            {"epochs": epochs} if epochs else None,
            on_epoch=bar.on_epoch_end,
        )
    metrics = {k: round(v, 4) for k, v in result.metrics.items() if k.endswith("_at_10")}
    console.print(f"run {result.run_id}, version {result.version or '(not registered)'}: {metrics}")
    if result.version:
        console.print(f"promote it with `recsys promote {result.version}`")


@app.command()
def synth(
    path: Annotated[str, typer.Argument(help="Folder of the new dataset store (Parquet by month)")],
    rows: Annotated[int, typer.Option(help="Interactions to generate")] = 5_000_000,
    months: Annotated[int, typer.Option(help="Months they span")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
) -> None:
    """Write a synthetic shop of any size into a dataset store; its path is a dataset name for every flow."""
    from pathlib import Path

    from recsys.data.synthetic_store import write_synthetic_store

    if Path(path).exists() and any(Path(path).iterdir()):
        fail(f"{path} exists and is not empty; choose a new folder")
    snap = write_synthetic_store(Path(path), rows, months=months, seed=seed)
    console.print(f"{snap.rows:,} interactions in {len(snap.files)} monthly files under {path} (digest {snap.digest})")
    console.print(f"train on it from the Prefect UI's pipeline run form with dataset = {Path(path).resolve()}")


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered model version to bless")],
    dataset: Annotated[str, typer.Option(help="Data to compare on (default: RECSYS_DATASET)")] = "",
) -> None:
    """Bless VERSION against the champion on the same split; make it champion if it is not worse."""
    settings = use_platform(get_settings())
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from recsys.data.ingest import load_dataset
    from recsys.data.split import temporal_user_split
    from recsys.promotion import bless_and_promote

    try:
        run_id = MlflowClient().get_model_version(settings.registered_model, version).run_id
    except MlflowException:
        fail(f"model {settings.registered_model!r} has no version {version}")
    data = load_dataset(dataset or settings.dataset, settings.shared_data_dir)
    with console.status(f"blessing version {version}"):
        result = bless_and_promote(settings, version, run_id, temporal_user_split(data.interactions), data.items)
    verdict = "[green]promoted[/]" if result.promoted else "[yellow]not promoted[/]"
    console.print(f"version {version} {verdict}: {'; '.join(result.blessing.reasons)}")
    if result.promoted:
        console.print("serve it with `recsys serve`")


@app.command()
def challenge(
    version: Annotated[str, typer.Argument(help="Registered model version to put on live traffic beside the champion")],
    role: Annotated[Literal["shadow", "canary", "both"], typer.Option("--as", help="The role on live traffic")] = "both",
) -> None:
    """Deploy VERSION as the champion's shadow and/or canary (no blessing: that is `recsys promote`'s job).

    The running service takes it at once (reload); the canary flow then promotes or rolls it back.
    """
    settings = use_platform(get_settings())
    from mlflow.exceptions import MlflowException

    from recsys import challengers, registry

    registry.configure(settings)
    if registry.champion(settings) is None:
        fail("there is no champion yet: a challenger needs one to be judged against")
    for name in challengers.ROLES if role == "both" else (role,):
        try:
            deployed = challengers.deploy(settings, version, name)
        except MlflowException:
            fail(f"model {settings.registered_model!r} has no version {version}")
        except ValueError as error:  # its ANN index misses exact search
            fail(str(error))
        console.print(f"version {version} deployed as {deployed.role} ({deployed.bento_tag})")
    console.print(platform.reload_service(settings))


@app.command()
def withdraw(
    role: Annotated[Literal["shadow", "canary", "both"], typer.Option("--as", help="The role to end")] = "both",
    reason: Annotated[str, typer.Option(help="Why, recorded on the model version's tags")] = "withdrawn by hand",
) -> None:
    """Take the shadow and/or canary out of service; the champion is untouched."""
    settings = use_platform(get_settings())
    from recsys import challengers, registry

    registry.configure(settings)
    for name in challengers.ROLES if role == "both" else (role,):
        gone = challengers.withdraw(settings, name, reason)
        console.print(f"{name}: version {gone.version} withdrawn" if gone else f"{name}: none deployed")
    console.print(platform.reload_service(settings))


@app.command()
def serve() -> None:
    """(Re)start the BentoML service on the current champion and print its URL."""
    settings = get_settings()
    require(platform.mlflow_server(settings))
    champion = platform.champion_version(settings)
    if champion is None:
        fail("there is no champion to serve yet; train one with `recsys train` and `recsys promote`")
    spec = platform.bentoml_server(settings)
    platform.stop(spec.name, settings)
    with console.status(f"starting the service on champion version {champion}"):
        try:
            platform.start(spec, settings)
        except (RuntimeError, TimeoutError) as error:
            fail(str(error))
    console.print(f"serving version {champion} at {spec.url} (Swagger UI at /)")


@app.command()
def forget(user_id: Annotated[str, typer.Argument(help="The user to erase, as the data and the service name them")]) -> None:
    """Erase USER_ID from the data, logs and models; a running service answers them with the fallback at once."""
    from recsys.privacy import forget as erase

    settings = get_settings()
    if platform.is_up(platform.mlflow_server(settings), settings):  # its registry's artifacts are served by the server
        settings = use_platform(settings)
    with console.status("erasing (data stores, logs, models)"):
        erasure = erase(settings, user_id)
    console.print(
        f"removed {erasure.store_rows} stored interactions, {erasure.request_log_lines} request and "
        f"{erasure.event_log_lines} feedback log lines, {erasure.model_vectors} model vectors; "
        f"rewrote {erasure.model_files} stored model files"
    )
    if erasure.model_version:
        console.print(f"champion is now version {erasure.model_version} (version {erasure.previous_champion} less this user)")
    for note in erasure.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"audited in {settings.audit_log} as {erasure.subject}")


@app.command()
def monitor(
    window: Annotated[int | None, typer.Option(help="Latest requests to judge (default: RECSYS_WINDOW_SIZE)")] = None,
    dataset: Annotated[str, typer.Option(help="Dataset the champion was trained on (default: RECSYS_DATASET)")] = "",
) -> None:
    """Run the monitor flow once: Evidently drift of the latest traffic, then the retrain decision."""
    settings = get_settings()
    require(platform.prefect_server(settings))
    require_tracking(settings)
    from pydantic import TypeAdapter

    from recsys.monitoring.policy import WindowCheck

    with tempfile.TemporaryDirectory() as tmp, console.status("running the monitor flow (see it in the Prefect UI)"):
        result_file = Path(tmp) / "window-check.json"
        cmd = [sys.executable, "-m", "flows.run", "monitor", "--result", str(result_file), f"dataset={dataset or settings.dataset}"]
        done = subprocess.run(
            cmd + ([f"window={window}"] if window else []), env={**os.environ, **platform.platform_env(settings)}, capture_output=True, text=True
        )
        if done.returncode != 0:
            fail(f"the monitor flow failed:\n{done.stderr[-3000:]}")
        check = TypeAdapter(WindowCheck).validate_json(result_file.read_bytes())
    console.print(
        f"drift share {check.drift.drift_share:.2f} over {check.drift.n_current} requests: "
        f"{'retrain' if check.retrain else 'no retrain'} ({'; '.join(check.decision.reasons)})"
    )
    console.print(f"report: {check.drift.html_path}")


@app.command()
def simulate(
    requests: Annotated[int, typer.Option(help="Visits to replay")] = 500,
    since: Annotated[str | None, typer.Option(help="Replay visits from this date on (default: the last `requests` visits)")] = None,
    dataset: Annotated[str, typer.Option(help="Dataset whose visits to replay (default: RECSYS_DATASET)")] = "",
) -> None:
    """Replay real visits of a dataset as live requests (and purchases as feedback) to the service."""
    settings = get_settings()
    spec = platform.bentoml_server(settings)
    require(spec)
    from recsys.data.ingest import load_dataset
    from recsys.progress import progress_bar
    from recsys.schemas import TS_COL
    from recsys.simulation.traffic import replay, visits

    data = load_dataset(dataset or settings.dataset, settings.shared_data_dir)
    live = visits(data.interactions if since is None else data.interactions[data.interactions[TS_COL] >= since])
    live = live.head(requests) if since else live.tail(requests)
    ok = hits = fallback = 0
    with progress_bar(console) as bar:
        task = bar.add_task("replaying visits", total=len(live), status="")
        for start in range(0, len(live), 50):
            stats = replay(spec.url, live.iloc[start : start + 50])
            ok, hits, fallback = ok + stats.ok, hits + stats.hits, fallback + stats.fallback
            bar.update(task, advance=stats.sent, status=f"hit rate {hits / max(ok, 1):.3f}")
    console.print(f"{ok} of {len(live)} answered; hit rate {hits / max(ok, 1):.3f}; fallback share {fallback / max(ok, 1):.2f}")
    console.print("judge the traffic with `recsys monitor`")


@app.command()
def loop(
    dataset: Annotated[str, typer.Option(help="online-retail or ml-latest-small")] = "online-retail",
    shift: Annotated[str, typer.Option(help="Shift injected beside the data's own: none, new_users, category, popularity, request_mix")] = "new_users",
    share: Annotated[float, typer.Option(help="Strength of the injected shift (0..1)")] = 0.6,
    windows: Annotated[int | None, typer.Option(help="Stop after this many windows")] = None,
) -> None:
    """Run the drift scenario on real data: calm windows, a shift, detection, retrain, recovery.

    It keeps its state in `<home>/loop` (its own MLflow, Prefect and registry) and wipes it first,
    so its figures never mix with the demo's or an earlier loop's; its servers use the configured ports
    and stay up when it ends (for the UIs): `recsys down` stops them, from any home.
    """
    settings = get_settings()
    home = (settings.home / "loop").resolve()
    os.environ["RECSYS_HOME"] = str(home)
    get_settings.cache_clear()
    loop_settings = get_settings()
    claim(loop_settings, [platform.prefect_server(loop_settings), platform.mlflow_server(loop_settings), platform.bentoml_server(loop_settings)])
    for name in ("bentoml", "runner", "mlflow", "prefect"):  # a fresh start: servers, registry, logs
        platform.stop(name, loop_settings)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    command = [sys.executable, "-m", "recsys.app.scenario", "--dataset", dataset, "--shift", shift, "--share", str(share)]
    if windows is not None:
        command += ["--windows", str(windows)]
    raise typer.Exit(subprocess.call(command, env=_demo_env()))


if __name__ == "__main__":
    app()
