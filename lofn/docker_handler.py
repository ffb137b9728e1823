"""Run Docker containers through the Docker SDK.

No shell is ever involved on the host: a container is created, started,
waited for and removed through the Docker Engine API, and the user's
command runs as ``sh -c COMMAND`` inside the image, exactly as written.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import posixpath
import secrets
import shlex
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from lofn import _engine, _options, _trace, options
from lofn._engine import Deadline, StderrTail, logs_tail
from lofn._reaper import created, creating, owner_labels
from lofn.errors import (
    ContainerTimeout,
    DockerFailure,
    ImageUnavailable,
    InvalidArgument,
    InvalidArgumentType,
    OutOfMemory,
)
from lofn.resources import Limits

__all__ = ["DockerFailure", "ContainerSpec", "run_container", "run", "execute",
           "validate_user_input", "get_client", "LABEL"]

logger = logging.getLogger(__name__)

#: Label put on every container lofn starts, so strays can be found with
#: ``docker ps -a --filter label=lofn``.
LABEL = "lofn"
#: What to do when the image is not on the host: ``never`` pull (fail with
#: :class:`~lofn.errors.ImageUnavailable`), pull if ``missing``, or pull once
#: per worker process (``always``). Declared in :mod:`lofn.options`.
PULL_POLICIES = options.PULL_POLICIES
#: Lines of a container's stderr that a failure carries (see :mod:`lofn._engine`).
STDERR_TAIL_LINES = _engine.STDERR_TAIL_LINES

# this process's Docker client, under the seed's name
get_client = _engine.client


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to run one container.

    Args:
        image: image name or ID.
        command: command for ``sh -c`` inside the container.
        volumes: host path -> ``{'bind': container path, 'mode': 'ro'|'rw'}``.
        options: ``containers.create`` keyword arguments, as translated
            from ``docker_options``.
        labels: labels added to lofn's own.
        name: container name, or ``None`` for one chosen by the engine.
        partition: Spark partition id, for error messages.
        timeout: seconds the container may run; it is killed at the deadline.
        pull: the image pull policy, one of :data:`lofn.options.PULL_POLICIES`.
        record: the attempt's trace record, which the run fills in (the
            image ID, peak memory, CPU time), or ``None``.
        limits: the limits derived from the task's Spark resources (already
            in ``options``), or ``None``; an OOM error explains them.
    """

    image: str
    command: str
    volumes: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    name: str | None = None
    partition: int | None = None
    timeout: float | None = None
    pull: str = "never"
    record: dict | None = field(default=None, compare=False, repr=False)
    limits: Limits | None = None

    def create_kwargs(self) -> dict:
        """Keyword arguments for ``client.containers.create``.

        Safe defaults unless the options say otherwise: the caller's uid:gid,
        every capability dropped (unless ``--cap-drop`` is given; ``--cap-add``
        adds back), ``no-new-privileges`` (unless ``--security-opt`` sets it);
        ``--privileged`` turns off both; at most
        :data:`~lofn.options.DEFAULT_PIDS_LIMIT` processes (``--pids-limit``).
        """
        kwargs = dict(self.options)
        kwargs.setdefault("pids_limit", options.DEFAULT_PIDS_LIMIT)
        if not kwargs.get("privileged"):  # --privileged asks for everything: no defaults
            kwargs.setdefault("cap_drop", ["ALL"])
            security = list(kwargs.get("security_opt", []))
            if not any(opt.startswith("no-new-privileges") for opt in security):
                security.insert(0, "no-new-privileges:true")
            kwargs["security_opt"] = security
        volumes = {**self.volumes, **kwargs.pop("volumes", {})}
        # "/shared/" and "/shared" are one mount point, but Podman refuses a bind
        # target with a trailing slash ("duplicate mount destination")
        kwargs["volumes"] = {host: {**bind, "bind": posixpath.normpath(bind["bind"])}
                             for host, bind in volumes.items()}
        if "environment" in kwargs:
            kwargs["environment"] = _options.resolve_environment(kwargs["environment"])
        kwargs.setdefault("user", f"{os.getuid()}:{os.getgid()}")
        if "entrypoint" in kwargs:
            kwargs["command"] = ["sh", "-c", self.command]
        else:
            kwargs["entrypoint"] = ["sh", "-c"]
            kwargs["command"] = [self.command]
        kwargs["labels"] = {LABEL: "1", **owner_labels(), **self.labels}
        if self.name:
            kwargs["name"] = self.name
        return kwargs


def _failure(spec: ContainerSpec, message: str, cls: type = DockerFailure,
             **fields) -> DockerFailure:
    return cls(message, image=spec.image, command=spec.command, partition=spec.partition,
               **fields)


def _timeout_failure(spec: ContainerSpec, stderr: str) -> DockerFailure:
    return _failure(spec, f"container did not finish within its timeout of {spec.timeout:g} s "
                          "and was killed", cls=ContainerTimeout, stderr=stderr)


def _exit_failure(spec: ContainerSpec, container, code: int, stderr: str) -> DockerFailure:
    """The failure for a non-zero exit: :class:`OutOfMemory` if the engine OOM-killed it."""
    container.reload()
    if container.attrs.get("State", {}).get("OOMKilled"):
        if spec.limits is not None and spec.limits.memory is not None:
            return _failure(spec, f"container was killed for exceeding its memory limit of "
                                  f"{spec.limits.memory_text()}", cls=OutOfMemory,
                            exit_code=code, stderr=stderr,
                            hint="raise the budget (Resources(memory=...)), let each retry "
                                 "grow it (Resources(growth=...)) or let Spark retry more "
                                 "(spark.task.maxFailures)")
        limit = spec.options.get("mem_limit", "the engine's default")
        return _failure(spec, f"container was killed for exceeding its memory limit ({limit})",
                        cls=OutOfMemory, exit_code=code, stderr=stderr,
                        hint="raise it with docker_options ['--memory', SIZE]")
    return _failure(spec, f"container exited with code {code}", exit_code=code, stderr=stderr)


_pulled: set[tuple[int, str]] = set()


def ensure_image(client, image: str, policy: str = "never", partition: int | None = None) -> None:
    """Make sure ``image`` is on this host, pulling it as ``policy`` allows.

    Raises:
        ImageUnavailable: the image is missing and ``policy`` is ``never``, or the pull failed.
        InvalidArgument: ``policy`` is not one of :data:`PULL_POLICIES`.
    """
    options.check_image_pull("image_pull", policy)
    host = os.uname().nodename
    if policy != "always" or (os.getpid(), image) in _pulled:
        try:
            client.images.get(image)
            return
        except ImageNotFound:
            pass
    if policy == "never":
        raise ImageUnavailable(
            f"image {image!r} is not present on host {host} and image_pull is 'never'",
            image=image, partition=partition,
            hint="build or load it on every executor host, or pass image_pull='missing' (from a "
                 "registry) or ship_image=True (from the driver, no registry) to DockerPipe")
    try:
        logger.info("pulling image %s on %s (image_pull=%s)", image, host, policy)
        client.images.pull(image)
    except (APIError, DockerException) as exc:
        raise ImageUnavailable(f"could not pull image {image!r} on host {host}: {exc}",
                               image=image, partition=partition) from exc
    _pulled.add((os.getpid(), image))


def run_container(spec: ContainerSpec) -> None:
    """Create, start and wait for a container, and always remove it.

    Raises:
        DockerFailure: the container could not be created, or did not exit 0;
            :class:`~lofn.errors.ContainerTimeout` past ``spec.timeout``,
            :class:`~lofn.errors.OutOfMemory` when killed for memory,
            :class:`~lofn.errors.ImageUnavailable` without the image.
        DockerUnavailable: no Docker engine answers;
            :class:`~lofn.errors.EngineLost` when it goes away meanwhile.
    """
    client = get_client()
    with _engine.in_flight(spec.partition, "checking the image") as flight:
        ensure_image(client, spec.image, spec.pull, spec.partition)
        flight.step = "creating the container"
        container = _create(client, spec, spec.create_kwargs(), flight)
        logger.debug("created container %s for partition %s", container.short_id,
                     spec.partition)
        metering = Metering(spec, container)
        try:
            flight.step = "starting the container"
            metering.start()
            flight.step = "waiting for the container"
            with Deadline(spec.timeout, container.kill) as deadline:
                code = container.wait().get("StatusCode")
            flight.step = "reading the container's state"
            if deadline.fired:
                raise _timeout_failure(spec, logs_tail(container))
            if code != 0:
                raise _exit_failure(spec, container, code, logs_tail(container))
        except APIError as exc:
            raise _failure(spec, f"the Docker engine failed to run the container: "
                                 f"{exc.explanation or exc}") from exc
        finally:
            metering.finish()
            _engine.remove(container, flight)


class Metering:
    """Starts a container and, when ``spec.record`` is traced, follows its cgroup."""

    def __init__(self, spec: ContainerSpec, container) -> None:
        self.spec, self.container = spec, container
        self._meter: _trace.Meter | None = None

    def start(self) -> None:
        self.container.start()
        if self.spec.record is not None:
            self._meter = _trace.Meter(self.container.id)

    def finish(self) -> None:
        """Put the container's peak memory and CPU time into the record."""
        if self._meter is not None and self.spec.record is not None:
            self.spec.record.update(self._meter.result())
            self._meter = None


def _create(client, spec: ContainerSpec, kwargs: dict, flight: _engine.Flight):
    """``containers.create``, the engine's refusals as lofn's errors.

    The container, by name before (the engine may make it and not answer)
    and by ID after, joins what ``flight`` removes if the engine is lost.
    """
    if kwargs.get("name"):
        flight.containers.append(kwargs["name"])
    creating()  # a watchdog whose worker dies before the answer waits for the container
    try:
        container = client.containers.create(spec.image, **kwargs)
    except ImageNotFound as exc:
        created()
        raise ImageUnavailable(f"image {spec.image!r} is not present on host "
                               f"{os.uname().nodename}", image=spec.image,
                               partition=spec.partition) from exc
    except APIError as exc:
        created()
        raise _failure(spec, f"the Docker engine refused to create the container: "
                             f"{exc.explanation or exc}") from exc
    created(container.id)
    flight.containers.append(container.id)
    if spec.record is not None:
        spec.record["image_id"] = container.attrs.get("Image")
    return container


# ---------------------------------------------------------------------------
# reuse mode: one long-lived container per Python worker, partitions run by its runner

#: Warm containers kept per worker; the least recently used goes beyond this.
MAX_WARM = 4
# The warm container's main process: it runs one partition's command per request
# that lofn writes to the container's stdin (the attach connection; nothing goes
# through /shared/, which the container owns), and answers on its stdout. A request
# is a line: the runner's key, a token, and the command with every byte but a few safe ones
# written as a \0ooo escape, which printf %b decodes (the x keeps trailing newlines
# from the command substitution). The command runs exactly as written with sh -c,
# as the container's user, with its environment and working directory; its stdin
# is /dev/null, its stdout discarded and its stderr sent to the runner's stdout.
# Then every process of the container but the runner (pid 1, which kill(-1) never
# signals) is killed: nothing a partition started outlives it into the next one.
# The command's processes run as this user (every capability dropped, no new
# privileges) in the container's own pid namespace (lofn offers no --pid), so
# kill(-1) reaches all of them and nothing outside. Last comes the answer line,
# "lofn-runner TOKEN STATUS" after a newline, on the same pipe as the stderr
# before it, so in order. The runner exits when its stdin closes (StdinOnce: when
# lofn's connection closes) or on SIGTERM. Its stdin is a pipe that the command, as the
# same user, could open through /proc/1/fd and write a request of its own to, to
# run after it: so the first line lofn sends is a random key, kept only in the
# runner's memory, that starts every request; on any other line the runner exits
# with RUNNER_REFUSED and the partition waiting for it fails.
RUNNER = r"""trap 'exit 0' TERM
IFS= read -r key || exit 0
while IFS= read -r request; do
  case $request in "$key "*) request=${request#* } ;; *) exit 97 ;; esac
  command=$(printf '%bx' "${request#* }")
  sh -c "${command%x}" </dev/null 2>&1 >/dev/null
  status=$?
  kill -9 -1 2>/dev/null
  printf '\nlofn-runner %s %s\n' "${request%% *}" "$status"
done"""
#: The warm container's exit code when its runner refused a request without lofn's key.
RUNNER_REFUSED = 97
#: The largest frame of the attach stream lofn accepts (engines send at most 32 KiB).
MAX_FRAME = 1 << 24
#: The most the runner's connection is read at once.
READ_SIZE = 1 << 16
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _-./=:,+@%")
_ESCAPES = [bytes([byte]) if byte in _SAFE else b"\\0%03o" % byte for byte in range(256)]
#: Seconds lofn watches whether the engine goes away after it stopped a warm container.
ENGINE_STOP_GRACE = 10.0  # dockerd stopping took over 3 s after its containers in a loaded CI run
_warm: collections.OrderedDict = collections.OrderedDict()  # (pid, key) -> _Runner


def runner_request(key: str, token: str, command: str) -> bytes:
    """The line asking the runner to run ``command``: no byte of it can end the line."""
    escaped = b"".join(_ESCAPES[byte] for byte in command.encode())
    return f"{key} {token} ".encode() + escaped + b"\n"


class RunnerGone(Exception):
    """The runner's connection ended: the container stopped, was killed, or the engine went."""


class _Runner:
    """A warm container and the attach connection to its runner."""

    def __init__(self, container, attached, connection: socket.socket) -> None:
        self.container, self.id = container, container.id
        self._attached = attached  # docker-py's file object; closed with the socket below
        self._socket = connection
        self._key = secrets.token_hex(16)
        self._stderr = StderrTail()  # the running request's
        self._stdout = _engine.attached_stdout(connection, lambda data: self._stderr.add(data),
                                               READ_SIZE, MAX_FRAME)

    def greet(self) -> None:
        """Give the started runner its key, which every request then starts with."""
        self._socket.sendall(self._key.encode() + b"\n")

    def run(self, command: str, stderr: StderrTail) -> int:
        """Run ``command``; its stderr goes to ``stderr``; return its exit status.

        Raises:
            RunnerGone: the connection ended before the answer.
            DockerFailure: the answer was not one the runner gives.
        """
        token = secrets.token_hex(16)
        try:
            self._socket.sendall(runner_request(self._key, token, command))
        except OSError as exc:
            raise RunnerGone() from exc
        marker = b"\nlofn-runner " + token.encode() + b" "
        pending = bytearray()
        self._stderr = stderr
        try:
            for data in self._stdout:  # kept across requests: it may hold a cut frame header
                pending += data
                found = pending.find(marker)
                if found < 0:  # keep what could be the start of the marker
                    keep = max(len(pending) - len(marker), 0)
                    stderr.add(bytes(pending[:keep]))
                    del pending[:keep]
                    continue
                stderr.add(bytes(pending[:found]))
                status, newline, _ = bytes(pending[found + len(marker):]).partition(b"\n")
                if newline and status.isdigit() and len(status) <= 3:
                    return int(status)
                if newline or len(status) > 3 or not (status.isdigit() or status == b""):
                    raise DockerFailure(f"the warm container's runner answered {status[:40]!r} "
                                        "(an exit status was expected)")
                del pending[:found]  # the rest of the answer is on its way
        except OSError as exc:
            raise RunnerGone() from exc
        except _engine.FrameTooLarge as exc:
            raise DockerFailure(str(exc)) from exc
        raise RunnerGone()

    def closed(self) -> bool:
        """Whether the runner's end of the connection is closed (its container stopped)."""
        try:
            return not self._socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False  # open, and quiet, as a runner waiting for a request is
        except OSError:
            return True

    def close(self) -> None:
        """Close the connection: the runner's stdin closes, and it exits."""
        self._socket.close()
        self._attached.close()


def attach(client, spec: ContainerSpec, container, what: str,
           instead: str) -> tuple[Any, socket.socket]:
    """Attach to ``container``'s stdin, stdout and stderr (before it starts).

    Returns docker-py's file object of the connection and a socket on a
    duplicate of its descriptor, which can ``sendall`` and half-close (the
    file object can neither); the caller closes the socket. Over TLS or SSH
    docker-py returns the socket itself, whose shutdown ends TLS in both
    directions (or which has none): ``what`` is refused then, saying what
    to do ``instead``.
    """
    attached = client.api.attach_socket(
        str(container.id), params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    return hijacked(attached, spec, what, instead)


def hijacked(attached, spec: ContainerSpec, what: str, instead: str) -> tuple[Any, socket.socket]:
    """docker-py's file object of a hijacked connection and a socket on a duplicate, as
    :func:`attach` returns them; over TLS or SSH ``what`` is refused."""
    if hasattr(attached, "sendall"):
        attached.close()
        raise _failure(spec, f"{what} needs a unix socket or plain TCP connection to the "
                             f"Docker engine; {_engine.address()} uses TLS or SSH: {instead}")
    connection = socket.socket(fileno=os.dup(attached.fileno()))
    connection.setblocking(True)  # an exec's connection comes non-blocking, from its timeout
    return attached, connection


def _warm_key(spec: ContainerSpec) -> tuple:
    options = json.dumps(spec.options, sort_keys=True, default=repr)
    return (os.getpid(), spec.image, json.dumps(spec.volumes, sort_keys=True), options)


def discard_warm(key: tuple, flight: _engine.Flight, runner: _Runner | None = None) -> None:
    """Remove ``runner`` (by default the one kept under ``key``), and forget it if kept."""
    kept = _warm.get(key)
    if kept is not None and (runner is None or kept is runner):
        del _warm[key]
    gone = runner or kept
    if gone is not None:
        gone.close()
        _engine.remove(gone.container, flight)


def _forget_warm() -> None:
    """The engine was lost: its warm containers are stopped or gone; remove them when it is back."""
    _engine.remove_when_back(runner.id for key, runner in _warm.items() if key[0] == os.getpid())
    for runner in _warm.values():
        runner.close()
    _warm.clear()


_engine.when_lost(_forget_warm)


def warm_runner(client, spec: ContainerSpec, flight: _engine.Flight) -> tuple:
    """(key, runner) of this worker's container for ``spec``'s image, mounts and options."""
    key = _warm_key(spec)
    runner = _warm.get(key)
    if runner is not None and runner.closed():  # stopped while this worker was idle
        try:
            runner.container.reload()
        except NotFound:
            pass
        refused = runner.container.attrs.get("State", {}).get("ExitCode") == RUNNER_REFUSED
        (logger.warning if refused else logger.info)(
            "warm container %s has stopped%s; starting a new one", runner.id[:12],
            " (its runner refused a request that was not lofn's, written by a partition's "
            "command)" if refused else "")
        discard_warm(key, flight)
    elif runner is not None:
        _warm.move_to_end(key)
        return key, runner
    for stale in [k for k in _warm if k[0] != os.getpid()]:  # inherited over a fork
        _warm.pop(stale).close()  # this process's copies; the parent's connection stays
    while len(_warm) >= MAX_WARM:
        discard_warm(next(iter(_warm)), flight)
    ensure_image(client, spec.image, spec.pull, spec.partition)  # a kept one has it
    kwargs = spec.create_kwargs()
    # stdin_open (not detached) also sets StdinOnce: the runner's stdin closes with
    # lofn's connection. Every byte of the attach stream would be logged: no log.
    kwargs.update(entrypoint=["sh", "-c"], command=[RUNNER], stdin_open=True, tty=False)
    kwargs.setdefault("log_config", {"Type": "none", "Config": {}})
    kwargs["labels"] = {**kwargs["labels"], f"{LABEL}.mode": "reuse"}
    flight.step = "creating the reusable container"
    container = _create(client, spec, kwargs, flight)
    try:
        flight.step = "attaching to the reusable container"
        _warm[key] = _Runner(container, *attach(client, spec, container, "reuse mode",
                                                "run without reuse_containers"))
        flight.step = "starting the reusable container"
        container.start()
        _warm[key].greet()
    except BaseException as exc:
        try:
            if key in _warm:
                discard_warm(key, flight)
            else:
                _engine.remove(container, flight)
        finally:
            if isinstance(exc, APIError):
                raise _failure(spec, f"the Docker engine refused the reusable container: "
                                     f"{exc.explanation or exc}") from exc
        raise
    return key, _warm[key]

def warm_command(spec: ContainerSpec) -> str:
    """``spec.command`` as a warm container runs it: the runner is the main process, so
    an ``--entrypoint`` goes in front of the command."""
    entrypoint = spec.options.get("entrypoint")
    return (shlex.join([*shlex.split(entrypoint), "sh", "-c", spec.command]) if entrypoint
            else spec.command)


def run_in_warm_container(spec: ContainerSpec) -> None:
    """Run ``spec.command`` by the runner of this worker's long-lived container.

    The container is created on first use and kept; it is discarded after a
    failure, a timeout or a lost connection, so the next partition starts in
    a fresh one. When the command ends, every process it started is killed.
    Same errors as :func:`run_container`.
    """
    client = get_client()
    command = warm_command(spec)
    with _engine.in_flight(spec.partition, "checking the image") as flight:
        key, runner = warm_runner(client, spec, flight)
        stderr = StderrTail()
        deadline = Deadline(spec.timeout, runner.container.kill)
        try:
            with deadline, warm_metered(spec, runner):
                flight.step = "running the partition's command (warm container)"
                code = runner.run(command, stderr)
        except RunnerGone:
            failure = (_timeout_failure(spec, stderr.text()) if deadline.fired
                       else _runner_gone(spec, runner.container, stderr.text()))
        except DockerFailure as exc:
            failure = _failure(spec, exc.message, stderr=stderr.text())
        else:
            if code == 0:
                return
            failure = _exit_failure(spec, runner.container, code, stderr.text())
        try:
            raise failure
        finally:  # the failure stays the task's error, whatever the removal meets
            discard_warm(key, flight, runner)


@contextmanager
def warm_metered(spec: ContainerSpec, runner: _Runner) -> Iterator[None]:
    """What the block's command used of the warm container, into ``spec.record`` (if traced)."""
    if spec.record is None:
        yield
        return
    spec.record["image_id"] = runner.container.attrs.get("Image")
    before = _trace.warm_reading(runner.id)
    try:
        yield
    finally:
        spec.record.update(_trace.warm_usage(runner.id, before))


def _runner_gone(spec: ContainerSpec, container, stderr: str) -> DockerFailure:
    """The failure for a warm container whose runner stopped answering."""
    try:
        container.reload()
    except NotFound:
        return _failure(spec, "the warm container was removed from outside while running the "
                              "partition's command", stderr=stderr,
                        hint="something ran docker rm on it")
    except APIError as exc:
        return _failure(spec, f"the connection to the warm container's runner was closed and "
                              f"the engine cannot say why: {exc.explanation or exc}",
                        stderr=stderr)
    state = container.attrs.get("State", {})
    if state.get("Running"):
        return _failure(spec, "the connection to the warm container's runner was closed",
                        stderr=stderr)
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        return _exit_failure(spec, container, code, stderr)
    if code == RUNNER_REFUSED:
        return _failure(spec, "the warm container's runner was sent a request that was not "
                              "lofn's (an earlier partition's command wrote to its stdin) and "
                              "stopped; the container was discarded", stderr=stderr,
                        hint="a retry of the task runs in a new container; do not reuse "
                             "containers for this image")
    # Stopped from outside: ``docker stop`` or ``kill``, or its engine stopping, which
    # stops its containers before it stops answering: then that is the error.
    client, deadline = get_client(), time.monotonic() + ENGINE_STOP_GRACE
    while time.monotonic() < deadline:
        try:
            client.ping()
        except APIError:
            break  # it answers, unhappy: not gone
        time.sleep(0.1)
    return _failure(spec, f"the warm container was stopped from outside (exit code {code}) "
                          "while running the partition's command", exit_code=code,
                    stderr=stderr, hint="something ran docker stop or kill on it")


def validate_user_input(volumes, shared_mountpoint: str | None = None,
                        check_host_paths: bool = True) -> dict:
    """Validate user volumes and return them normalised.

    Args:
        volumes: ``{host_path: {'bind': container_path, 'mode': 'ro'|'rw'}}``;
            ``mode`` is optional and defaults to ``'ro'``.
        shared_mountpoint: the per-task directory's mount point, which no
            volume may bind over.
        check_host_paths: also require each host path to exist here (off
            for HDFS paths).

    Returns:
        A new dict with lower-case keys and ``mode`` filled in.

    Raises:
        TypeError: ``volumes`` or one of its values is not a dict.
        ValueError: unknown keys, a missing or relative bind path, a mode
            other than ro/rw, a relative, missing or forbidden host path.
    """
    if not isinstance(volumes, dict):
        raise InvalidArgumentType(
            f"volumes must be a dict of host path -> {{'bind': path, 'mode': 'ro'|'rw'}}, "
            f"got {type(volumes).__name__} {volumes!r}")
    normalised = {}
    for host, binding in volumes.items():
        if not isinstance(host, str) or not host.startswith("/"):
            raise InvalidArgument(f"volume host path {host!r} must be an absolute path")
        if os.path.normpath(host) in _options.FORBIDDEN_SOURCES:
            raise InvalidArgument(f"volume host path {host!r} may not be mounted into a "
                                  "container (it would expose the host or its Docker engine)")
        if not isinstance(binding, dict):
            raise InvalidArgumentType(
                f"volume {host!r} must map to a dict like {{'bind': path, 'mode': 'ro'}}, "
                f"got {binding!r}")
        binding = {str(key).lower(): value for key, value in binding.items()}
        unknown = set(binding) - {"bind", "mode"}
        if unknown:
            raise InvalidArgument(f"volume {host!r} has unknown keys {sorted(unknown)}; "
                                  "'bind' and 'mode' are the only allowed keys")
        bind = binding.get("bind")
        if not isinstance(bind, str) or not bind.startswith("/"):
            raise InvalidArgument(
                f"volume {host!r} needs 'bind': an absolute path in the container, got {bind!r}")
        mode = binding.get("mode", "ro")
        if mode not in ("ro", "rw"):
            raise InvalidArgument(f"volume {host!r} has mode {mode!r}; use 'ro' or 'rw'")
        if shared_mountpoint and _overlaps(bind, shared_mountpoint):
            raise InvalidArgument(f"volume {host!r} binds {bind!r}, which collides with the "
                                  f"shared mountpoint {shared_mountpoint!r}")
        if check_host_paths and not os.path.exists(host):
            raise InvalidArgument(f"volume host path {host!r} does not exist")
        normalised[host] = {"bind": bind, "mode": mode}
    return normalised


def _overlaps(first: str, second: str) -> bool:
    first, second = os.path.normpath(first), os.path.normpath(second)
    return os.path.commonpath([first, second]) in (first, second)


def run(image_name: str, command: str, bind_files: list[str], volume_files: list[str], *,
        docker_options: list[str] | None = None, volumes: dict | None = None,
        temporary_directory_parent: str | None = None,
        master_type: str | None = None) -> str | bool:
    """Run one container, returning ``False`` on success or a failure message.

    Args:
        image_name: image to run.
        command: command to run with ``sh -c`` in the container.
        bind_files: container paths to mount on, one per ``volume_files``.
        volume_files: host paths to mount read-write.

    Keyword Args:
        docker_options: additional ``docker run`` flags, as a list.
        volumes: user volumes, as for :class:`lofn.api.DockerPipe`.
        temporary_directory_parent: accepted for compatibility; unused.
        master_type: accepted for compatibility; unused.

    Returns:
        ``False`` if the container exited 0, else the failure message.
    """
    if len(bind_files) != len(volume_files):
        raise InvalidArgument(f"run() needs one bind path per volume file, got {bind_files!r} "
                              f"for {volume_files!r}")
    mounts = {host: {"bind": bind, "mode": "rw"}
              for host, bind in zip(volume_files, bind_files, strict=True)}
    if volumes:
        mounts.update(validate_user_input(volumes))
    spec = ContainerSpec(image_name, command, volumes=mounts,
                         options=_options.parse_docker_options(docker_options))
    return _status(spec)


def execute(command):
    """Run a ``docker run`` command line through the Docker SDK, without a shell.

    The older lofn handed a ``docker run ...`` string to a host shell; this
    parses such a line (a string, or an argument list) with the same flag
    translation as ``docker_options`` and runs it through the SDK.
    A trailing ``sh -c CMD`` or ``bash -c CMD`` becomes the container's
    ``sh -c CMD``; any other trailing command is quoted and run by ``sh -c``.

    Args:
        command: e.g. ``"docker run -v /data:/data:ro busybox sh -c 'ls /data'"``.

    Returns:
        ``False`` if the container exited 0, else the failure message.
    """
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] != ["docker", "run"]:
        raise InvalidArgument(f"execute() takes a 'docker run ...' command line, got {command!r}")
    flags, rest = _split_run_arguments(argv[2:])
    if not rest:
        raise InvalidArgument(f"no image in docker command line {command!r}")
    image, args = rest[0], rest[1:]
    if len(args) == 3 and args[0] in ("sh", "bash", "/bin/sh", "/bin/bash") and args[1] == "-c":
        script = args[2]
    else:
        script = shlex.join(args) if args else "true"
    options = _options.parse_docker_options(flags)
    return _status(ContainerSpec(image, script, options=options))


def _split_run_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``docker run`` arguments into (flags, [image, command...])."""
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        index += 2 if _options._needs_value(argv[index]) else 1
    return argv[:index], argv[index:]


def _status(spec: ContainerSpec):
    try:
        run_container(spec)
    except DockerFailure as failure:
        return f"The docker container failed with: {failure}"
    return False
