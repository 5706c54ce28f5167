#!/usr/bin/env python3
"""Writes an OCI image layout whose first layer is a real Debian-like tar.gz, for the soak run.

Usage: soak-image.py DIR TAG SEED [SIZE...]

Layer 1 is a gzip tar with /etc/os-release (Debian 12) and /var/lib/dpkg/status listing zlib1g and
libc6 at versions the project's synthetic OSV records (testdata/vulndb/osv/Debian-synthetic-
edgecases) find vulnerable, plus /etc/soak-seed holding SEED so every image's layer has its own
digest (each is a fresh layer for the scanner to read). Each SIZE adds a gzip tar layer holding one
file of SIZE random bytes. Prints the same JSON description as imagegen.py.
"""

import io
import json
import os
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imagegen import parse_size, write_blob, write_image  # noqa: E402

OS_RELEASE = b"""PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION_CODENAME=bookworm
ID=debian
"""

DPKG_STATUS = b"""Package: zlib1g
Status: install ok installed
Priority: optional
Section: libs
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1
Description: compression library - runtime

Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u14
Description: GNU C Library: Shared libraries

"""


def debian_layer(seed):
    """A small gzip tar of the files the dpkg and os-release catalogers read."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (
            ("etc/os-release", OS_RELEASE),
            ("var/lib/dpkg/status", DPKG_STATUS),
            ("etc/soak-seed", seed.encode() + b"\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def random_layer(size):
    """A gzip tar holding one file of `size` random bytes (a real tar, so a scan reads it whole)."""
    raw = io.BytesIO()
    # compresslevel 1: random bytes do not compress, and level 9 only costs time
    with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("opt/soak/random.bin")
        info.size = size
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return raw.getvalue()


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    out, tag, seed = sys.argv[1], sys.argv[2], sys.argv[3]
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    gz = "application/vnd.oci.image.layer.v1.tar+gzip"
    d, n = write_blob(blobs, [debian_layer(seed)])
    layers = [{"mediaType": gz, "digest": d, "size": n}]
    for size in (parse_size(s) for s in sys.argv[4:]):
        d, n = write_blob(blobs, [random_layer(size)])
        layers.append({"mediaType": gz, "digest": d, "size": n})
    write_image(out, blobs, tag, layers)


if __name__ == "__main__":
    main()
