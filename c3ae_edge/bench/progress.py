"""Progress of a bench run on stderr: a rich bar on a terminal, and one plain line per measured row everywhere."""

from __future__ import annotations


class Progress:
    """``step`` moves the bar; ``log`` prints a line (prefixed with rows done / total when it ends a row)."""

    def __init__(self, total: int, quiet: bool):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.quiet = quiet
        self.total, self.done = total, 0
        self.p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=quiet or not self.console.is_terminal,
        )
        self.task = self.p.add_task("bench", total=total)

    def __enter__(self):
        self.p.__enter__()
        return self

    def __exit__(self, *a):
        self.p.__exit__(*a)

    def step(self, what: str, advance: int = 0) -> None:
        self.done += advance
        self.p.update(self.task, description=what, advance=advance)

    def grow(self, extra: int) -> None:
        self.total += extra
        self.p.update(self.task, total=self.total)

    def log(self, msg: str) -> None:
        if not self.quiet:
            self.console.print(msg, highlight=False, markup=False, soft_wrap=True)

    def row(self, msg: str) -> None:
        """One measured row: the bar advances and the line says how far the run is."""
        self.step(msg.split(":")[0], 1)
        self.log(f"[{self.done}/{self.total}] {msg}")
