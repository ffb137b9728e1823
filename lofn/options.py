"""The options of lofn's entry points, declared once.

Two small frozen objects hold every keyword a user can give lofn, and check
it when they are made, on the driver, before anything touches Docker or
Spark:

- :class:`PipeOptions`: the keywords of :class:`~lofn.api.DockerPipe`,
  which apply to every call made with that pipe.
- :class:`CallOptions`: the keywords of one call (:meth:`~lofn.api.DockerPipe.map`,
  :meth:`~lofn.api.DockerPipe.reduce`, ..., :func:`~lofn.dataframe.map_dataframe`),
  with the image and command. A method passes only its own keywords; the
  others keep their defaults, which no method's job reads.

Each field is declared with :func:`_option`: its check, and for those the
``lofn`` command line offers, its flag and help text. The command line is
generated from these declarations (see :func:`command_line_options`), so an
option is added in one place: a field here, a parameter in the signatures
that take it.

>>> CallOptions(image_name="busybox", command="true", timeout=-1)
Traceback (most recent call last):
    ...
lofn.errors.InvalidArgument: timeout must be a positive number of seconds, got -1
"""

from __future__ import annotations

import enum
import itertools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from lofn import _options
from lofn.errors import InvalidArgument, InvalidArgumentType
from lofn.resources import Resources
from lofn.resources import check as _resources
from lofn.tmp_file_handler import check_file_name

__all__ = ["BINARY_INPUTS_LIST", "DEFAULT_PIDS_LIMIT", "MAX_FAN_IN", "PULL_POLICIES",
           "CallOptions", "Default", "PipeOptions", "command_line_options"]

#: The values of ``image_pull``.
PULL_POLICIES = ("never", "missing", "always")
#: Processes (and threads) a container may have unless ``--pids-limit`` says otherwise
#: (``-1``: no limit): a fork bomb stops there, not at the host's limit.
DEFAULT_PIDS_LIMIT = 4096
#: Default bound on how many blocks one ``reduce`` container merges at once, and the
#: most files one ``reduce_binary`` container merges.
MAX_FAN_IN = 32
#: The file listing a ``reduce_binary`` merge's numbered inputs (``max_fan_in`` > 2).
BINARY_INPUTS_LIST = "inputs.txt"


class Default(enum.Enum):
    """A keyword's default that depends on something else."""

    #: ``pipe(delimiter=...)``: ``'\\n'`` for text, no delimiter for ``binary=True``.
    DELIMITER = "newline for text, none for binary"
    #: A method's ``timeout``: the pipe's (``timeout=None`` means no limit).
    PIPE_TIMEOUT = "the pipe's timeout"


# -- checks: each takes the keyword's name and value, returns the value to keep -------

Check = Callable[[str, Any], Any]


def _anything(name: str, value: Any) -> Any:
    return value


def _flag(name: str, value: Any) -> bool:
    return bool(value)


def _seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
            or not math.isfinite(value)):
        raise InvalidArgument(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _call_seconds(name: str, value: Any) -> float | Default | None:
    return value if value is Default.PIPE_TIMEOUT else _seconds(name, value)


def _whole(minimum: int | None, wording: str, *, required: bool = False) -> Check:
    def check(name: str, value: Any) -> int | None:
        if (value is None and required) or (value is not None and (
                isinstance(value, bool) or not isinstance(value, int)
                or (minimum is not None and value < minimum))):
            raise InvalidArgument(f"{name} must be {wording}, got {value!r}")
        return value
    return check


def _binary_fan_in(name: str, value: Any) -> int:
    """``reduce_binary``'s ``max_fan_in`` (the field's name is not the keyword's)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_FAN_IN:
        raise InvalidArgument(f"max_fan_in must be a whole number from 2 to {MAX_FAN_IN}, "
                              f"got {value!r}")
    return value


def _numbered_file_name(name: str, value: Any) -> str:
    """A ``str.format`` pattern naming input ``1``, ``2``, ... so that the names sort in order."""
    example = "e.g. 'input_{:03d}.bin'"
    if not isinstance(value, str):
        raise InvalidArgumentType(f"{name} must be a file name pattern with a field for the "
                                  f"input's number ({example}), got {value!r}")
    try:
        names = [value.format(number) for number in range(1, MAX_FAN_IN + 1)]
    except (IndexError, KeyError, ValueError) as exc:
        raise InvalidArgument(f"{name} {value!r} is not a pattern str.format can fill with "
                              f"the input's number ({example}): {exc}") from None
    if len(set(names)) != len(names):
        raise InvalidArgument(f"{name} {value!r} must contain a field for the input's number "
                              f"({example}), or every input gets the same name")
    for first, second in itertools.pairwise(names):
        if first > second:
            raise InvalidArgument(
                f"{name} {value!r} must number the inputs so that their names sort in "
                f"order, as a shell glob lists them: {second!r} sorts before {first!r}; "
                f"pad the number ({example})")
    for number in names:
        check_file_name(number, name)
        if "\n" in number:  # inputs.txt lists the names one a line
            raise InvalidArgument(f"{name} {value!r} names an input {number!r}, with a newline")
    return value


def _fraction(name: str, value: Any) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0 < value <= 1):
        raise InvalidArgument(f"{name} must be a fraction in (0, 1], got {value!r}")
    return value


def _function(name: str, value: Any) -> Callable | None:
    if value is not None and not callable(value):
        raise InvalidArgumentType(f"{name} must be a function, got {value!r}")
    return value


def _text(name: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise InvalidArgument(f"{name} must be a non-empty string, got {value!r}")
    return value


def _unset_if_empty(check: Check) -> Check:
    """``check``, with ``''`` taken as not given (``os.environ.get(NAME, '')``)."""
    return lambda name, value: check(name, None if value == "" else value)


def _required_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{name} must be a non-empty string, got {value!r}")
    return value


def _command(name: str, value: Any) -> str:
    _required_text(name, value)
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{name} must be text that UTF-8 can encode; "
                              f"{value[exc.start:exc.end]!r} at {exc.start} is not "
                              f"(a lone surrogate): {value!r}") from exc
    return value


def _absolute(what: str, *, hdfs: bool = False) -> Check:
    def check(name: str, value: Any) -> str | None:
        prefixes = ("/", "hdfs:///") if hdfs else ("/",)
        if value is not None and (not isinstance(value, str) or not value.startswith(prefixes)):
            raise InvalidArgument(f"{name} must be {what}, got {value!r}")
        return value
    return check


def _trace_location(name: str, value: Any) -> str | None:
    """A directory: ``hdfs:///path``, or a local path (made absolute, on the driver)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or (
            value.startswith("hdfs:") and not value.startswith("hdfs:///")):
        raise InvalidArgument(f"{name} must be a directory path or an hdfs:///path, "
                              f"got {value!r}")
    return value if value.startswith("hdfs:") else os.path.abspath(value)


def _choice(choices: tuple[str, ...]) -> Check:
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise InvalidArgument(f"{name} {value!r} is not one of "
                                  f"{', '.join(map(repr, choices))}")
        return value
    return check


#: The check of ``image_pull``, also where a policy arrives without :class:`PipeOptions`.
check_image_pull = _choice(PULL_POLICIES)


def _file_name(name: str, value: Any) -> str:
    return check_file_name(value, name)


def _docker_options(name: str, value: Any) -> tuple[str, ...]:
    _options.parse_docker_options(value)  # raises naming a flag lofn cannot translate
    return tuple(value or ())


def _hdfs_timeout(name: str, value: Any) -> Any:
    from lofn.hdfs_handler import _timeout

    if value is not None:
        try:
            connect, read = _timeout(value)
        except (TypeError, ValueError, IndexError):
            connect = read = -1.0
        if not (connect > 0 and read > 0):
            raise InvalidArgument(f"{name} must be seconds or (connect, read) seconds, "
                                  f"got {value!r}")
    return value


def _option(check: Check, default: Any = None, *, flags: tuple[str, ...] = (),
            action: str = "store", choices: tuple[str, ...] | None = None,
            help: str | None = None, metavar: str | None = None,
            parse: Callable[[str], Any] | None = None) -> Any:
    """A field and its ``check``; for the command line, its ``flags`` (the long one first).

    ``action`` is argparse's: ``'store'`` (one value, read by ``parse`` then
    checked), ``'store_true'`` or ``'append'`` (repeatable; each text read by
    ``parse``, all checked together); ``choices``, ``help`` and ``metavar``
    are argparse's too.
    """
    return field(default=default, metadata={
        "check": check, "flags": flags, "action": action, "choices": choices, "help": help,
        "metavar": metavar, "parse": parse})


def _check_fields(options: Any) -> None:
    """Run every field's check; keep what it returns (the normalised value)."""
    for declared in fields(options):
        value = declared.metadata["check"](declared.name, getattr(options, declared.name))
        object.__setattr__(options, declared.name, value)


@dataclass(frozen=True, kw_only=True)
class PipeOptions:
    """The keywords of :class:`~lofn.api.DockerPipe`, checked (see its docstring)."""

    temporary_directory_parent: str | None = _option(_absolute("an absolute path"))
    shared_mountpoint: str = _option(_absolute("an absolute container path"), "/shared/")
    volumes: dict | None = _option(
        _anything, flags=("--volume", "-v"), action="append", metavar="HOST:BIND[:ro|rw]",
        parse=_options.parse_volume,
        help="mount host directory or file HOST at BIND in every container, read-only "
             "unless ':rw' (repeatable)")
    hdfs_url: str | None = _option(_unset_if_empty(_text))
    hdfs_user: str | None = _option(_unset_if_empty(_text))
    hdfs_timeout: Any = _option(_hdfs_timeout)
    timeout: float | None = _option(
        _seconds, flags=("--timeout",), metavar="SECONDS", parse=float,
        help="kill a container that runs longer than this and fail the job")
    image_pull: str = _option(
        check_image_pull, "never", flags=("--image-pull",), choices=PULL_POLICIES,
        help="pull the image: never (default: it must be on every host), when missing, "
             "or always")
    ship_image: bool = _option(_flag)
    reuse_containers: bool = _option(
        _flag, False, flags=("--reuse-containers",), action="store_true",
        help="run the partitions in one long-lived container per Spark worker "
             "instead of a container each")
    result_cache: str | None = _option(_absolute("an absolute directory or an hdfs:///path",
                                                 hdfs=True))
    trace: str | None = _option(
        _trace_location, flags=("--trace",), metavar="DIR",
        help="write a JSON record of every container run into directory DIR (local, or "
             "hdfs:///path on YARN); 'lofn report DIR' shows them")
    resources: bool | Resources | None = _option(
        _resources, flags=("--resources",), metavar="SPEC", parse=Resources.parse,
        help="size each container by its Spark task: --cpus from the task's CPUs, memory "
             "from the task's share of a budget, GPUs Spark assigned; SPEC is 'auto' or "
             "e.g. 'memory=8g,growth=2,max_memory=16g,gpus' (memory: the executor's budget)")

    def __post_init__(self) -> None:
        if not self.shared_mountpoint:  # the seed's scripts pass None for the default
            object.__setattr__(self, "shared_mountpoint", "/shared/")
        _check_fields(self)
        if self.ship_image and self.image_pull != "never":
            raise InvalidArgument(f"ship_image=True runs the driver's image and pulls nothing: "
                                  f"leave image_pull at 'never', not {self.image_pull!r}")
        if self.volumes is not None:
            from lofn.docker_handler import validate_user_input

            object.__setattr__(self, "volumes", validate_user_input(
                self.volumes, self.shared_mountpoint, check_host_paths=False))


@dataclass(frozen=True, kw_only=True)
class CallOptions:
    """The keywords of one call, checked; a method passes only those it takes."""

    image_name: str = _option(_required_text)
    command: str = _option(_command)
    docker_options: Sequence[str] | None = _option(
        _docker_options, (), flags=("--docker-option",), action="append",
        metavar="FLAG", help="a 'docker run' flag, e.g. --docker-option=--memory=1g or "
                             "--docker-option='-e THREADS=4' (repeatable; see lofn's "
                             "docker_options documentation for the supported flags)")
    timeout: float | Default | None = _option(_call_seconds, Default.PIPE_TIMEOUT)
    sample: float | None = _option(_fraction)
    sample_seed: int = _option(_whole(None, "a whole number", required=True), 0)
    container_input_name: str = _option(_file_name, "input.txt")
    container_output_name: str = _option(_file_name, "output.txt")
    container_binary_output_name: str = _option(_file_name, "output.bin")
    container_binary_input_1_name: str = _option(_file_name, "input_1.bin")
    container_binary_input_2_name: str = _option(_file_name, "input_2.bin")
    container_binary_inputs_name: str = _option(_numbered_file_name, "input_{:03d}.bin")
    map_udf: Callable | None = _option(_function)
    reduce_udf: Callable | None = _option(_function)
    max_fan_in: int = _option(
        _whole(2, "a whole number >= 2"), MAX_FAN_IN, flags=("--max-fan-in",), metavar="N",
        parse=int,
        help="the most outputs one --reduce container merges at once (default 32; 2 gives "
             "a pairwise tree)")
    # reduce_binary's max_fan_in: its default (pairwise) and bound are not reduce's
    binary_max_fan_in: int = _option(_binary_fan_in, 2)
    hdfs_tempdir: str | None = _option(_unset_if_empty(_absolute("an absolute HDFS path")))
    binary: bool = _option(_flag, False)
    delimiter: Any = _option(_anything, Default.DELIMITER)
    key: Callable | None = _option(_function)
    num_partitions: int | None = _option(_whole(1, "a positive whole number"))
    partition_func: Callable | None = _option(_function)
    sort: bool = _option(_flag, False)
    combiner: str | None = _option(_text)

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.delimiter is Default.DELIMITER:
            object.__setattr__(self, "delimiter", None if self.binary else b"\n")
        elif isinstance(self.delimiter, str):
            object.__setattr__(self, "delimiter", self.delimiter.encode("utf-8"))
        if self.delimiter is not None and (not isinstance(self.delimiter, bytes)
                                           or not self.delimiter):
            raise InvalidArgument(f"delimiter must be a non-empty str or bytes, got "
                                  f"{self.delimiter!r}")
        if self.delimiter is None and not self.binary:
            raise InvalidArgument("text mode needs a delimiter; use binary=True for whole "
                                  "streams")
        self._check_binary_names()

    def _check_binary_names(self) -> None:
        """``reduce_binary``: the names and ``reduce_udf`` of one way to merge, not the other's."""
        fan_in = self.binary_max_fan_in
        defaults = {declared.name: declared.default for declared in fields(self)}
        if fan_in == 2:
            unused = ["container_binary_inputs_name"]
            why = ("numbers the inputs of a merge of more than two files; with max_fan_in=2 "
                   "they are container_binary_input_1_name and container_binary_input_2_name")
        else:
            if self.reduce_udf is not None:
                raise InvalidArgument(f"reduce_udf merges two blocks at a time: give "
                                      f"max_fan_in=2 with it, not {fan_in}")
            unused = ["container_binary_input_1_name", "container_binary_input_2_name"]
            why = (f"names an input of a pairwise merge (max_fan_in=2); with max_fan_in="
                   f"{fan_in} the inputs are numbered by container_binary_inputs_name "
                   f"({self.container_binary_inputs_name!r})")
        for name in unused:
            if getattr(self, name) != defaults[name]:
                raise InvalidArgument(f"{name}={getattr(self, name)!r} is not used: {name} "
                                      f"{why}")
        inputs = [self.container_binary_inputs_name.format(number)
                  for number in range(1, fan_in + 1)]
        if fan_in > 2 and self.container_binary_output_name in [*inputs, BINARY_INPUTS_LIST]:
            raise InvalidArgument(
                f"container_binary_output_name {self.container_binary_output_name!r} is the "
                f"name of an input of a merge of up to {fan_in} files ({inputs[0]!r}, ..., "
                f"{inputs[-1]!r}, {BINARY_INPUTS_LIST!r}); choose another")

    @cached_property
    def create_options(self) -> dict:
        """``docker_options`` as Docker SDK ``containers.create`` arguments."""
        return _options.parse_docker_options(list(self.docker_options or ()))

    def sampled(self, rdd):
        """``rdd``, or the reproducible sample of it that ``sample``/``sample_seed`` ask for."""
        if self.sample is None or self.sample == 1:
            return rdd
        return rdd.sample(False, self.sample, self.sample_seed)


def command_line_options() -> Iterator[tuple[type, Any]]:
    """(option class, field) of every option the ``lofn`` command line offers, in order."""
    for owner in (PipeOptions, CallOptions):
        for declared in fields(owner):
            if declared.metadata["flags"]:
                yield owner, declared

