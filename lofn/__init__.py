"""lofn: run a serial command-line tool over Spark partitions in Docker containers.

>>> from lofn import DockerPipe
>>> pipe = DockerPipe(SparkConf())
>>> counts = pipe.map(rdd, "busybox", "wc -l < /shared/input.txt > /shared/output.txt")
"""

from __future__ import annotations

import logging

from lofn.api import DockerPipe
from lofn.dataframe import map_dataframe, pipe_for
from lofn.errors import (
    ContainerTimeout,
    DockerFailure,
    DockerUnavailable,
    EmptyInput,
    HdfsFailure,
    HdfsUnavailable,
    ImageUnavailable,
    InvalidArgument,
    InvalidArgumentType,
    LofnError,
    MissingOutputError,
    OutOfMemory,
    OutputDecodeError,
    TemporaryDirectoryError,
    UnsafeOutputError,
    from_spark_error,
)
from lofn.resources import Resources

__version__ = "1.0.0.dev0"
__all__ = [
    "DockerPipe",
    "map_dataframe",
    "pipe_for",
    "Resources",
    "LofnError",
    "InvalidArgument",
    "InvalidArgumentType",
    "EmptyInput",
    "DockerUnavailable",
    "HdfsFailure",
    "HdfsUnavailable",
    "TemporaryDirectoryError",
    "DockerFailure",
    "MissingOutputError",
    "UnsafeOutputError",
    "ContainerTimeout",
    "OutOfMemory",
    "ImageUnavailable",
    "OutputDecodeError",
    "from_spark_error",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
