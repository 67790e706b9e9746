"""Rich progress bars for people at a terminal: training epochs and long-running steps.

`EpochProgress` is driven by `training.train(on_epoch=bar.on_epoch_end)`, which every family
calls after each epoch of its epoch-choosing fit. It shows the epoch count and the latest loss
and validation NDCG@10 as they arrive. Nothing here imports Keras: `recsys simulate` and the
other commands that only draw bars start in a second, not after TensorFlow's import.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bar(console: Console | None = None) -> Progress:
    """The one bar style of the CLI: what, how far, how long so far and still to go."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    )


class EpochProgress:
    """A progress bar over `epochs` training epochs, as a context manager."""

    def __init__(self, epochs: int, description: str = "training", console: Console | None = None) -> None:
        self.progress = progress_bar(console)
        self.task = self.progress.add_task(description, total=epochs, status="")

    def __enter__(self) -> EpochProgress:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        shown = {"loss": logs.get("loss"), "val ndcg@10": logs.get("val_ndcg_at_10")}
        status = "  ".join(f"{name} {value:.4f}" for name, value in shown.items() if value is not None)
        self.progress.update(self.task, completed=epoch + 1, status=status)
