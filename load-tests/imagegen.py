#!/usr/bin/env python3
"""Writes an OCI image layout with random, incompressible layers, for the load tests.

Usage: imagegen.py DIR TAG SIZE [SIZE...]

Each SIZE (bytes; suffixes K, M, G = KiB, MiB, GiB) makes one layer of exactly that many bytes of
os.urandom data, declared as application/vnd.oci.image.layer.v1.tar+gzip. Each layer is a valid
gzip stream (stored, i.e. uncompressed, deflate blocks around random bytes) so that skopeo keeps it
as it is when pushing instead of compressing it (which would change its digest and size). The
bytes inside are not a tar: nothing in the load tests unpacks layers.

Prints a JSON description to stdout: manifest digest/size/bytes (base64), config and layer digests
and sizes, and the path of each blob in the layout.
"""

import base64
import hashlib
import json
import os
import struct
import sys
import zlib

CHUNK = 1 << 20


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if s[-1].upper() in mult:
        return int(float(s[:-1]) * mult[s[-1].upper()])
    return int(s)


def write_blob(blobs, data_iter):
    """Streams chunks into blobs/sha256/<tmp>, returns (digest, size)."""
    tmp = os.path.join(blobs, ".tmp")
    h = hashlib.sha256()
    n = 0
    with open(tmp, "wb") as f:
        for chunk in data_iter:
            h.update(chunk)
            f.write(chunk)
            n += len(chunk)
    digest = "sha256:" + h.hexdigest()
    os.replace(tmp, os.path.join(blobs, h.hexdigest()))
    return digest, n


def stored_gzip(size):
    """A gzip member of exactly `size` bytes whose payload is random (stored deflate blocks)."""
    # gzip header 10 + trailer 8; each stored block costs 5 bytes of header, max 65535 payload.
    if size < 18 + 5:
        raise SystemExit(f"layer size {size} too small (minimum 23 bytes)")
    body = size - 18
    blocks = -(-body // (65535 + 5))
    payload = body - 5 * blocks
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # magic, deflate, no flags, mtime 0, unix
    crc = 0
    left = payload
    out = bytearray()
    for i in range(blocks):
        n = min(65535, left)
        # spread the payload so every block but the last carries 65535 bytes
        data = os.urandom(n)
        crc = zlib.crc32(data, crc)
        final = 1 if i == blocks - 1 else 0
        out += bytes([final]) + struct.pack("<HH", n, n ^ 0xFFFF) + data
        left -= n
        if len(out) >= CHUNK:
            yield bytes(out)
            out = bytearray()
    if out:
        yield bytes(out)
    yield struct.pack("<II", crc & 0xFFFFFFFF, payload & 0xFFFFFFFF)


def write_image(out, blobs, tag, layers):
    """Writes the config, manifest and index.json of an OCI layout whose layer blobs are already in
    `blobs`, and prints the image's description (digests, sizes, blob paths) as JSON on stdout."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
            "history": [{"created_by": "breakwater load-tests imagegen.py"} for _ in layers],
        },
        sort_keys=True,
    ).encode()
    cd, cn = write_blob(blobs, [config])
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
            "layers": layers,
        },
        sort_keys=True,
    ).encode()
    md, mn = write_blob(blobs, [manifest])
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": md,
                        "size": mn,
                        "annotations": {"org.opencontainers.image.ref.name": tag},
                    }
                ],
            },
            f,
        )
    json.dump(
        {
            "tag": tag,
            "manifest": {"digest": md, "size": mn, "b64": base64.b64encode(manifest).decode()},
            "config": {"digest": cd, "size": cn},
            "layers": layers,
            "blob_path": {l["digest"]: os.path.join(blobs, l["digest"].split(":")[1]) for l in layers},
        },
        sys.stdout,
        indent=1,
    )
    print()


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    out, tag = sys.argv[1], sys.argv[2]
    sizes = [parse_size(s) for s in sys.argv[3:]]
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)

    layers = []
    for size in sizes:
        d, n = write_blob(blobs, stored_gzip(size))
        assert n == size, (n, size)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})

    write_image(out, blobs, tag, layers)


if __name__ == "__main__":
    main()
