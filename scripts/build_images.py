#!/usr/bin/env python3
"""Build the images lofn's examples and tests use, locally and without a registry.

``lofn/busybox``: ``FROM scratch`` plus Debian's static busybox (``sh``, ``awk``,
``sort``, ... but no bash), built in seconds through the Docker SDK.

Usage: build_images.py [--force]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile

import docker

BUSYBOX_IMAGE = "lofn/busybox:latest"
BUSYBOX_BINARY = "/bin/busybox"
DOCKERFILE = b"""FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
LABEL org.lofn.image=busybox
CMD ["sh"]
"""


def _context(binary: str) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(DOCKERFILE)
        tar.addfile(info, io.BytesIO(DOCKERFILE))
        tar.add(binary, arcname="busybox")
    buffer.seek(0)
    return buffer


def build_busybox(client: docker.DockerClient, force: bool = False) -> str:
    """Build ``lofn/busybox`` from the host's static busybox; return the image id."""
    if not force:
        try:
            return client.images.get(BUSYBOX_IMAGE).id
        except docker.errors.ImageNotFound:
            pass
    if not os.path.exists(BUSYBOX_BINARY):
        sys.exit(f"{BUSYBOX_BINARY} is missing: install Debian's busybox-static")
    image, _ = client.images.build(fileobj=_context(BUSYBOX_BINARY), custom_context=True,
                                   tag=BUSYBOX_IMAGE, rm=True, forcerm=True)
    return image.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args()
    client = docker.from_env()
    print(f"{BUSYBOX_IMAGE} {build_busybox(client, args.force)[:19]}")


if __name__ == "__main__":
    main()
