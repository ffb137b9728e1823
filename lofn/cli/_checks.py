"""The checks made before Spark starts: a bad value fails in a second, with exit status 2.

The container options are checked by their own declarations
(:mod:`lofn.options`) and by :class:`~lofn.api.DockerPipe`; what is here
is what only the command line knows: local paths, a ``--volume`` given
twice, flags that need another flag.
"""

from __future__ import annotations

import argparse
import glob
import os
from dataclasses import Field
from typing import Any
from urllib.parse import urlparse

from lofn.cli._render import UsageError
from lofn.errors import LofnError
from lofn.options import PipeOptions, command_line_options


def check_map_arguments(args: argparse.Namespace) -> None:
    """Check the ``map`` flags that depend on each other, and the input and output paths.

    Sets ``args.input_size``: the size of a single local INPUT file, else ``None``.
    """
    if args.reduce is None and (args.max_fan_in is not None or args.reduce_image is not None):
        raise UsageError("--max-fan-in and --reduce-image need --reduce")
    for name in ("image", "command", "reduce", "reduce_image"):
        value = getattr(args, name)
        if value is not None and not value.strip():
            raise UsageError(f"--{name.replace('_', '-')} must not be empty")
    args.input_size = check_input(args.input)
    check_output(args.output)


def _is_local(path: str) -> bool:
    scheme = urlparse(path).scheme
    return scheme in ("", "file") or len(scheme) == 1  # C:\ on Windows


def _local_path(path: str) -> str:
    return urlparse(path).path if path.startswith("file:") else path


def check_input(path: str) -> int | None:
    """Check a local INPUT exists; return its size if it is a single file."""
    if not _is_local(path):
        return None
    local = _local_path(path)
    if glob.has_magic(local):
        if not glob.glob(local):
            raise UsageError(f"input {path!r} matches no file")
        return None
    if not os.path.exists(local):
        raise UsageError(f"input file {path!r} does not exist")
    if not os.access(local, os.R_OK):
        raise UsageError(f"input file {path!r} is not readable")
    return os.path.getsize(local) if os.path.isfile(local) else None


def check_output(path: str) -> None:
    """Check OUTPUT can be written: a file name in a writable directory, or ``-``."""
    if path == "-":
        return
    if os.path.isdir(path):
        raise UsageError(f"output {path!r} is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"output directory {parent!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"output directory {parent!r} is not writable")


# ---------------------------------------------------------------------------
# the declared options

def declared_options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keywords of :class:`~lofn.api.DockerPipe` and of its calls given on the command line.

    Returns:
        ``(pipe keywords, call keywords)``, each holding only the options
        given a value other than their default.

    Raises:
        UsageError: a repeated flag's value is refused, naming the flag.
    """
    pipe: dict[str, Any] = {}
    call: dict[str, Any] = {}
    for owner, declared in command_line_options():
        value = getattr(args, declared.name)
        if declared.name == "volumes":
            value = volumes(declared, value, args.master)
        elif declared.metadata["action"] == "append":
            value = _repeated(declared, value)
        if value is None or value == declared.default or value in ((), [], {}):
            continue
        (pipe if owner is PipeOptions else call)[declared.name] = value
    return pipe, call


def _repeated(declared: Field, texts: list[str]) -> Any:
    """A repeated flag's values, each read by the field's ``parse``, checked by its check."""
    flag, parse = declared.metadata["flags"][0], declared.metadata["parse"]
    values = []
    for text in texts:
        try:
            values.append(text if parse is None else parse(text))
        except LofnError as exc:
            raise UsageError(f"{flag} {text!r}: {exc}") from None
    try:
        return declared.metadata["check"](declared.name, tuple(values))
    except LofnError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def volumes(declared: Field, texts: list[str], master: str) -> dict:
    """``--volume`` values as ``DockerPipe(volumes=...)``, each checked, or a :class:`UsageError`.

    Each is read by the field's ``parse`` and checked as ``DockerPipe``
    checks its volumes. A relative local HOST is made absolute (on YARN,
    HOST is an HDFS path); in local mode HOST must exist here.
    """
    from lofn.docker_handler import validate_user_input

    flag, parse = declared.metadata["flags"][0], declared.metadata["parse"]
    on_hdfs = master.startswith("yarn")
    mountpoint = PipeOptions().shared_mountpoint
    found: dict = {}
    for text in texts:
        try:
            host, binding = parse(text)
            if not on_hdfs and not host.startswith("/"):
                host = os.path.abspath(host)
            if host in found:
                raise UsageError(f"{flag} {text!r}: {host!r} is already mounted by another "
                                 f"{flag}")
            found.update(validate_user_input({host: binding}, mountpoint,
                                             check_host_paths=master.startswith("local")))
        except LofnError as exc:
            raise UsageError(f"{flag} {text!r}: {exc}") from None
    return found


def check_image(image: str, pull: str) -> None:
    """In local mode, check the image before the (slow) Spark start-up."""
    from lofn import _engine
    from lofn.docker_handler import ensure_image

    ensure_image(_engine.client(), image, pull)
