"""Translate ``docker run`` flags into Docker SDK ``containers.create`` arguments.

Users of the older lofn passed ``docker_options`` as a list of ``docker run``
flags that were pasted into a shell command. lofn never calls the docker CLI,
so the flags users actually pass are translated here, on the driver, before
any task runs; anything else is rejected with an error naming the flag.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable

from docker.types import DeviceRequest, Ulimit

from lofn.errors import InvalidArgument, InvalidArgumentType

# Paths never bind-mounted into a container: the host root, and the Docker
# socket, which would hand the container the whole engine.
FORBIDDEN_SOURCES = ("/", "/var/run/docker.sock", "/run/docker.sock")


def _cpus(value: str) -> dict:
    try:
        cpus = float(value)
    except ValueError:
        cpus = -1.0
    if cpus <= 0:
        raise InvalidArgument(f"--cpus takes a positive number, got {value!r}")
    return {"nano_cpus": int(cpus * 1e9)}


def _pids_limit(value: str) -> dict:
    try:
        return {"pids_limit": int(value)}
    except ValueError:
        raise InvalidArgument(f"--pids-limit takes a whole number, got {value!r}") from None


def _env_file(path: str) -> dict:
    """Read an env file on the driver, as ``docker run --env-file`` does on its host."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
    except OSError as exc:
        raise InvalidArgument(f"--env-file {path!r} cannot be read: {exc.strerror}") from exc
    return {"environment": [line for line in lines if line and not line.startswith("#")]}


def _gpus(value: str) -> dict:
    value = value.strip("'\"")
    if value == "all":
        request = DeviceRequest(count=-1, capabilities=[["gpu"]])
    elif value.startswith("device="):
        request = DeviceRequest(device_ids=value[len("device="):].split(","),
                                capabilities=[["gpu"]])
    elif value.isdigit():
        request = DeviceRequest(count=int(value), capabilities=[["gpu"]])
    else:
        raise InvalidArgument(
            f"--gpus takes 'all', a count or 'device=ID[,ID]', got {value!r}")
    return {"device_requests": [request]}


def _ulimit(value: str) -> dict:
    name, _, limits = value.partition("=")
    soft, _, hard = limits.partition(":")
    try:
        ulimit = Ulimit(name=name, soft=int(soft), hard=int(hard or soft))
    except ValueError:
        raise InvalidArgument(
            f"--ulimit takes NAME=SOFT[:HARD] with whole numbers, got {value!r}") from None
    return {"ulimits": [ulimit]}


def _tmpfs(value: str) -> dict:
    path, _, options = value.partition(":")
    if not path.startswith("/"):
        raise InvalidArgument(f"--tmpfs takes an absolute container path, got {value!r}")
    return {"tmpfs": {path: options}}


def parse_volume(value: str) -> tuple[str, dict]:
    """``HOST:BIND[:ro|rw]`` -> (HOST, ``{'bind': BIND, 'mode': MODE}``), as ``docker run -v``."""
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts) or parts[2:] not in ([], ["ro"], ["rw"]):
        raise InvalidArgument(f"volume {value!r} is not HOST:BIND, HOST:BIND:ro or HOST:BIND:rw")
    source, bind = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "ro"
    return source, {"bind": bind, "mode": mode}


def _volume(value: str) -> dict:
    source, binding = parse_volume(value)
    return {"volumes": {source: binding}}


def _bool(key: str) -> Callable[[str], dict]:
    def parse(value: str) -> dict:
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise InvalidArgument(f"{key} takes true or false, got {value!r}")
        return {key: lowered == "true"}
    return parse


def _plain(key: str) -> Callable[[str], dict]:
    return lambda value: {key: value}


def _listed(key: str) -> Callable[[str], dict]:
    return lambda value: {key: [value]}


# flag -> (takes a value, parser). Aliases share a parser.
_VALUE_FLAGS: dict[str, Callable[[str], dict]] = {
    "--cpus": _cpus,
    "--memory": _plain("mem_limit"),
    "--shm-size": _plain("shm_size"),
    "--ipc": _plain("ipc_mode"),
    "--env": _listed("environment"),
    "--env-file": _env_file,
    "--network": _plain("network_mode"),
    "--user": _plain("user"),
    "--workdir": _plain("working_dir"),
    "--entrypoint": _plain("entrypoint"),
    "--gpus": _gpus,
    "--device": _listed("devices"),
    "--cap-add": _listed("cap_add"),
    "--cap-drop": _listed("cap_drop"),
    "--security-opt": _listed("security_opt"),
    "--ulimit": _ulimit,
    "--tmpfs": _tmpfs,
    "--volume": _volume,
    "--pids-limit": _pids_limit,
}
_BOOL_FLAGS: dict[str, Callable[[str], dict]] = {
    "--read-only": _bool("read_only"),
    "--privileged": _bool("privileged"),
    # lofn always removes its containers; accepted so old scripts keep working.
    "--rm": lambda value: {},
}
_SHORT = {"-m": "--memory", "-e": "--env", "-u": "--user", "-w": "--workdir",
          "-v": "--volume"}

SUPPORTED_FLAGS = sorted([*_VALUE_FLAGS, *_BOOL_FLAGS, *_SHORT])


def _merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, list):
            into.setdefault(key, []).extend(value)
        elif isinstance(value, dict):
            into.setdefault(key, {}).update(value)
        else:
            into[key] = value


def _tokens(options: Iterable[str]) -> list[str]:
    """Split elements such as ``'-e FOO=bar'`` the way the old shell did.

    A value that follows its flag as a separate element is kept whole, so
    ``['-e', 'GREETING=hello world']`` keeps its space.
    """
    tokens: list[str] = []
    expecting_value = False
    for option in options:
        if not isinstance(option, str):
            raise InvalidArgumentType(
                f"docker_options must be a list of strings, got {option!r} in it")
        if not expecting_value and option.startswith("-") and any(c.isspace() for c in option):
            split = shlex.split(option)
            tokens.extend(split)
            expecting_value = _needs_value(split[-1])
        else:
            tokens.append(option)
            expecting_value = not expecting_value and _needs_value(option)
    return tokens


def _needs_value(token: str) -> bool:
    flag, inline = _split_flag(token)
    return flag in _VALUE_FLAGS and inline is None


def _split_flag(token: str) -> tuple[str, str | None]:
    """``--memory=2g`` -> (``--memory``, ``2g``); ``-m2g``/``-m=2g`` -> (``--memory``, ``2g``)."""
    if token.startswith("--"):
        flag, sep, inline = token.partition("=")
        return flag, inline if sep else None
    short, rest = token[:2], token[2:]
    if short in _SHORT:
        return _SHORT[short], (rest[1:] if rest.startswith("=") else rest) or None
    return token, None


def parse_docker_options(options: list[str] | None) -> dict:
    """Translate ``docker run`` flags into ``containers.create`` keyword arguments.

    Args:
        options: flags as given to ``docker run``, e.g.
            ``['--memory=2g', '-e', 'THREADS=4']``. ``None`` means none.

    Returns:
        Keyword arguments for ``docker.client.containers.create``. ``volumes``
        come back in lofn's volumes form and ``environment`` as ``KEY=VALUE``
        or bare ``KEY`` entries (a bare key is taken from the executor's
        environment when the container starts, as the docker CLI does).

    Raises:
        InvalidArgumentType: ``options`` is not a list of strings.
        InvalidArgument: a flag is not supported, lacks its value, or has a
            value that cannot be right.
    """
    if options is None:
        return {}
    if not isinstance(options, (list, tuple)):
        raise InvalidArgumentType(
            f"docker_options must be a list of docker run flags, got {options!r}")
    kwargs: dict = {}
    tokens = _tokens(options)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        flag, inline = _split_flag(token)
        if flag in _BOOL_FLAGS:
            _merge(kwargs, _BOOL_FLAGS[flag]("true" if inline is None else inline))
        elif flag in _VALUE_FLAGS:
            if inline is not None:
                value = inline
            elif index < len(tokens):
                value = tokens[index]
                index += 1
            else:
                raise InvalidArgument(f"docker option {token!r} needs a value")
            _merge(kwargs, _VALUE_FLAGS[flag](value))
        else:
            raise InvalidArgument(
                f"docker option {token!r} is not supported by lofn; supported flags: "
                + ", ".join(SUPPORTED_FLAGS))
    return kwargs


def resolve_environment(entries: list[str]) -> list[str]:
    """Fill bare ``KEY`` entries from this process's environment, dropping unset ones."""
    resolved = []
    for entry in entries:
        if "=" in entry:
            resolved.append(entry)
        elif entry in os.environ:
            resolved.append(f"{entry}={os.environ[entry]}")
    return resolved
