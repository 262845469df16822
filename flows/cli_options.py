"""What the `priceparity` commands share: their common options, declared once, and how an error the user can
fix becomes one line on stderr with its exit code (flows/cli.py)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from audits.errors import ConfigError, PriceParityError, one_line, printable

if TYPE_CHECKING:
    from flows.dask_contrast import ScaleOut

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The TOML config file.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's and Dask's own logs.")]
ExecutorOption = Annotated[Literal["local", "dask"], typer.Option(
    "--executor", help="Where the disparity checks' per-customer sums run: this process, or tasks on Dask.")]
DaskAddressOption = Annotated[str | None, typer.Option(
    "--dask-address", help="Scheduler of an existing Dask cluster (tcp://host:8786); default: a local cluster.")]
DaskWorkersOption = Annotated[int, typer.Option("--dask-workers", min=1, help="Workers of the local Dask cluster.")]
PartitionsOption = Annotated[int | None, typer.Option(
    "--partitions", min=1, help="Customer partitions, one Dask task each (default: one per Dask worker).")]
ScratchOption = Annotated[Path | None, typer.Option(
    "--scratch-dir", help="Folder for the run's Parquet files; on a real cluster, storage all workers can read.")]

ADDRESS_WITHOUT_DASK = "--dask-address {address!r} needs --executor dask"


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn an error the user can fix into one line on stderr and its exit code."""
    try:
        yield
    except PriceParityError as err:
        error_line(one_line(err))
        raise typer.Exit(err.exit_code) from None


def error_line(message: str) -> None:
    typer.echo(f"error: {printable(message)}", err=True)


SCALE_OUT_OPTIONS = {"executor": (ExecutorOption, "local"), "dask_address": (DaskAddressOption, None),
                     "dask_workers": (DaskWorkersOption, 2), "partitions": (PartitionsOption, None),
                     "scratch_dir": (ScratchOption, None)}


def scale_out_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command the scale-out options, declared once (SCALE_OUT_OPTIONS): typer reads them from the
    signature returned here, and the command gets them checked, as one ScaleOut in its `scale_out` parameter."""
    own = [p.replace(annotation=eval(p.annotation, command.__globals__))  # typer needs the annotations' objects
           for p in inspect.signature(command).parameters.values() if p.name != "scale_out"]
    options = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
               for name, (annotation, default) in SCALE_OUT_OPTIONS.items()]

    @functools.wraps(command)
    def with_scale_out(**given: Any) -> None:
        with user_errors():
            scale_out = checked_scale_out(**{name: given.pop(name) for name in SCALE_OUT_OPTIONS})
        command(**given, scale_out=scale_out)

    with_scale_out.__signature__ = inspect.Signature([*own, *options])  # type: ignore[attr-defined]
    with_scale_out.__annotations__ = {p.name: p.annotation for p in [*own, *options]}
    return with_scale_out


def checked_scale_out(executor: Literal["local", "dask"], dask_address: str | None, dask_workers: int,
                      partitions: int | None, scratch_dir: Path | None) -> ScaleOut:
    """The scale-out options as one ScaleOut; --dask-address without --executor dask is refused."""
    from flows.dask_contrast import ScaleOut

    if dask_address and executor != "dask":
        raise ConfigError(ADDRESS_WITHOUT_DASK.format(address=dask_address))
    return ScaleOut(executor=executor, dask_address=dask_address, dask_workers=dask_workers, partitions=partitions,
                    scratch_dir=str(scratch_dir.resolve()) if scratch_dir else None)
