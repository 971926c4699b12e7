"""The click group; each command lives in a module of its own and is added here."""

from __future__ import annotations

import click

from .. import __version__
from . import bench, info, sweep, train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dlaccel")
def cli() -> None:
    """dlaccel: the building blocks of fully-connected nets on loops, NumPy, Numba and CuPy, measured.

    \b
    dlaccel info     versions, backends, BLAS, CPU and GPU
    dlaccel bench    the ladder loops -> numpy -> numba -> cupy (and PyTorch) side by side
    dlaccel train    train a model on a small data set, with a progress bar
    dlaccel sweep    a grid of training settings, trials in parallel, the table and the pictures
    """


for command in (info.info, bench.bench, train.train, sweep.sweep_command):
    cli.add_command(command)

__all__ = ["cli"]
