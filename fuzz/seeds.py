#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/<target>/seed-*) of the parser targets from the
repository's own test data and from the shapes the unit tests use. Run from the repository
root: python3 fuzz/seeds.py. The seeds are committed; this records where each came from."""
import gzip, io, json, os, re, struct, tarfile, zipfile

ROOT = os.getcwd()
OUT = os.path.join(ROOT, "fuzz", "corpus")
VDB = os.path.join(ROOT, "testdata", "vulndb")


def seed(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def read(*parts):
    with open(os.path.join(*parts), "rb") as f:
        return f.read()


D = lambda c: "sha256:" + c * 64
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

# oci_names: the names, tags, digests and keys of crates/oci's unit tests.
for n, s in [("repo", "library/nginx"), ("separators", "my-org/a__b.c---d/x9"),
             ("tag", "v1.2.3-rc_1"), ("digest", D("a")),
             ("sha512", "sha512:" + "0" * 128), ("key", "docker.io/library/nginx"),
             ("hostport", "127.0.0.1:5000/x")]:
    seed("oci_names", n, s)

# manifest: the shapes of crates/oci/src/manifest.rs and referrers.rs tests.
plat = {"os": "linux", "architecture": "arm64", "variant": "v8"}
seed("manifest", "oci-index", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
    {"mediaType": OCI_MANIFEST, "digest": D("a"), "size": 10, "platform": plat}]}))
seed("manifest", "oci-image", json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
    "config": {"digest": D("b"), "size": 1}, "layers": [{"digest": D("c"), "size": 2}]}))
seed("manifest", "docker-list", json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
    {"mediaType": DOCKER_V2, "digest": D("d"), "size": 7, "platform": {"os": "linux", "architecture": "amd64"}}]}))
seed("manifest", "schema1", json.dumps({"schemaVersion": 1, "fsLayers": [
    {"blobSum": D("d")}, {"blobSum": D("e")}, {"blobSum": D("d")}]}))
import base64
b64 = lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")
payload = '{\n   "schemaVersion": 1,\n   "name": "x"\n}'
fl = len(payload) - 2
prot = '{"formatLength":%d,"formatTail":"%s","time":"2026-01-01T00:00:00Z"}' % (fl, b64("\n}"))
seed("manifest", "schema1-signed", payload[:fl] + ',\n   "signatures": [{"header": {}, "signature": "x", "protected": "%s"}]\n}' % b64(prot))
seed("manifest", "referrers", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
    {"mediaType": OCI_MANIFEST, "digest": D("f"), "size": 3, "artifactType": "application/vnd.example.sbom",
     "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}}]}))

# range: blob size (8 bytes, little-endian) then the header, as src/server/range.rs tests.
for i, h in enumerate(["bytes=0-4", "bytes=5-", "bytes=-3", "bytes=0-1,3-4", "items=0-1"]):
    seed("range", str(i), struct.pack("<Q", 10) + h.encode())

# endpoint: the request paths of crates/oci/src/endpoint.rs tests and what clients send.
for n, s_ in [("base", "/v2/"), ("catalog", "/v2/_catalog"), ("manifest", "/v2/library/nginx/manifests/latest"),
              ("blob", "/v2/a/b/blobs/" + D("a")), ("tags", "/v2/a/tags/list"),
              ("upload", "/v2/a/blobs/uploads/"), ("referrers", "/v2/a/referrers/" + D("b")),
              ("nested", "/v2/manifests/manifests/x")]:
    seed("endpoint", n, s_)

# accept: what docker, containerd and skopeo send (one value per line).
seed("accept", "docker", "application/vnd.docker.distribution.manifest.v2+json\n"
     "application/vnd.docker.distribution.manifest.list.v2+json\n"
     "application/vnd.oci.image.index.v1+json\napplication/vnd.oci.image.manifest.v1+json")
seed("accept", "q", "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json;q=0.9, */*;q=0.1")
seed("accept", "schema1", "application/vnd.docker.distribution.manifest.v1+json")

# www_authenticate: the forms of the parser's unit tests.
seed("www_authenticate", "hub", 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"')
seed("www_authenticate", "two", 'Basic realm="Registry Realm", BEARER Realm = "http://127.0.0.1:9/token" , service=reg, scope="repository:a/b:pull,push repository:c:pull", error="insufficient_scope"')
seed("www_authenticate", "escapes", r'Bearer realm="https://x/\"t\"",scope="repository:127.0.0.1:5000/x:pull"')

# lifecycle_policy: the ECR documentation examples in crates/lifecycle/src/tests/ecr_examples.rs.
src = read(ROOT, "crates", "lifecycle", "src", "tests", "ecr_examples.rs").decode()
for i, m in enumerate(re.findall(r'let json = r#"(.*?)"#;', src, re.S)):
    seed("lifecycle_policy", "ecr-%d" % i, m)

# osv: hand-written Debian records and one record of each zipped feed in testdata/vulndb/osv.
for n in ["0001", "0005", "0011", "0017"]:
    seed("osv", "deb-" + n, read(VDB, "osv", "Debian-synthetic-edgecases", "SYNTH-DEB-%s.json" % n))
for feed, member in [("PyPI", "PYSEC-2021-558.json"), ("Go", "GO-2022-0894.json"),
                     ("crates.io", "RUSTSEC-2019-0001.json"), ("Alpine-v3.11", "ALPINE-CVE-2018-1302.json")]:
    seed("osv", feed.lower(), zipfile.ZipFile(os.path.join(VDB, "osv", feed + "-all.zip")).read(member))

# dpkg_status / apk_installed: testdata/vulndb/pkgdb-samples (claircore and trivy test data).
for n in ["claircore-debian-only.status", "claircore-postgresql.status", "claircore-vcpkg.status"]:
    seed("dpkg_status", n.replace(".status", ""), read(VDB, "pkgdb-samples", n))
seed("dpkg_status", "status-d", "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n")
apk = read(VDB, "pkgdb-samples", "trivy-apk-installed")
seed("apk_installed", "trivy", apk)
seed("apk_installed", "short", apk[:apk.index(b"\n\n", 1500) + 2])

# rpm_header: selector byte (0 header, 1 BerkeleyDB, 2 NDB), then the bytes.
def header(tags):
    index, store = b"", b""
    for tag, value in tags:
        if isinstance(value, int):
            index += struct.pack(">IIII", tag, 4, len(store), 1)
            store += struct.pack(">I", value)
        else:
            index += struct.pack(">IIII", tag, 6, len(store), 1)
            store += value.encode() + b"\0"
    return struct.pack(">II", len(tags), len(store)) + index + store
hdr = header([(1000, "bash"), (1001, "5.1.8"), (1002, "1.cm2"), (1022, "x86_64"),
              (1044, "bash-5.1.8-1.cm2.src.rpm"), (1003, 1)])
seed("rpm_header", "header", b"\0" + hdr)
seed("rpm_header", "bdb-libuuid", b"\1" + read(VDB, "rpmdb-samples", "libuuid", "Packages"))
ndb = bytearray(4096 * 2)
ndb[0:16] = b"RpmP" + struct.pack("<III", 0, 1, 1)
ndb[32:48] = b"Slot" + struct.pack("<III", 1, 4096 // 16, 1)
blob = b"BlbS" + struct.pack("<III", 1, 1, len(hdr)) + hdr
ndb[4096:4096 + len(blob)] = blob
seed("rpm_header", "ndb", b"\2" + bytes(ndb))

# layer_walk: mode byte (odd: plain tar, checksums recomputed), then a layer holding the files
# each cataloger looks for, a whiteout, an opaque directory, a symlink and a hard link.
def layer():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        def add(name, data=b"", **kw):
            ti = tarfile.TarInfo(name)
            for k, v in kw.items():
                setattr(ti, k, v)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        add("etc/os-release", b'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n')
        add("var/lib/dpkg/status", read(VDB, "pkgdb-samples", "claircore-debian-only.status"))
        add("lib/apk/db/installed", apk[:600])
        add("usr/.wh.gone")
        add("opt/.wh..wh..opq")
        add("bin/sh", type=tarfile.SYMTYPE, linkname="/bin/bash")
        add("var/lib/dpkg/status-link", type=tarfile.LNKTYPE, linkname="var/lib/dpkg/status")
        add("usr/local/bin/tool", b"#!/bin/sh\necho hi\n", mode=0o755)
    return buf.getvalue()
tar = layer()
seed("layer_walk", "tar", b"\1" + tar)
seed("layer_walk", "gzip", b"\0" + gzip.compress(tar, mtime=0))

# catalog_files: selector byte (os-release, Python METADATA, package.json, Cargo.lock, jar, ELF).
seed("catalog_files", "os-release", b"\0" + b'ID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n')
seed("catalog_files", "metadata", b"\1" + b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nSummary: x\n")
seed("catalog_files", "package-json", b"\2" + b'{"name":"@scope/left-pad","version":"1.3.0","license":"MIT"}')
seed("catalog_files", "cargo-lock", b"\3" + b'version = 3\n\n[[package]]\nname = "serde"\nversion = "1.0.200"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\n')
jar = io.BytesIO()
with zipfile.ZipFile(jar, "w") as z:
    z.writestr("META-INF/maven/org.example/lib/pom.properties", "groupId=org.example\nartifactId=lib\nversion=1.2.3\n")
seed("catalog_files", "jar", b"\4" + jar.getvalue())
