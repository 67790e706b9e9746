"""Rich progress bars for people at a terminal: training epochs and long-running steps.

`EpochProgress` is a Keras callback, so a `model.fit(callbacks=[...])` drives it; our own
training loops call the same `on_epoch_end(epoch, logs)` through `training.train(on_epoch=...)`.
It shows the epoch count and the latest loss and validation NDCG@10 as they arrive.
"""

from __future__ import annotations

from types import TracebackType

import keras
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bar(console: Console | None = None) -> Progress:
    """The one bar style of the CLI: what, how far, how long so far and still to go."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
        console=console,
    )  # fmt: skip


class EpochProgress(keras.callbacks.Callback):
    """A progress bar over `epochs` training epochs, as a Keras callback and a context manager."""

    def __init__(self, epochs: int, description: str = "training", console: Console | None = None) -> None:
        super().__init__()
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
