#!/usr/bin/env python3
"""Builds a one-layer OCI image layout tar around a static busybox.

usage: mkimage.py BUSYBOX PAUSE NAME OUT.tar

The image carries busybox's applets as links in /bin and a pause program
as /pause, its default entrypoint: as the sandbox image of the runc
handler it is the pod's pause process, as it would be in Kubernetes (a
`sleep` there would show up in the pod's process list).
Deterministic: same input, same digests.
"""

import hashlib
import io
import json
import sys
import tarfile

APPLETS = ["sh", "sleep", "cat", "ls", "echo", "hostname", "ps", "id", "true", "false", "ip", "wget", "httpd", "tail", "head"]


def add(tar: tarfile.TarFile, info: tarfile.TarInfo, data: bytes = b"") -> None:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data) if data else None)


def layer(busybox: bytes, pause: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev"]:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            add(tar, info)
        info = tarfile.TarInfo("bin/busybox")
        info.size = len(busybox)
        info.mode = 0o755
        add(tar, info, busybox)
        info = tarfile.TarInfo("pause")
        info.size = len(pause)
        info.mode = 0o755
        add(tar, info, pause)
        for a in APPLETS:
            info = tarfile.TarInfo(f"bin/{a}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            add(tar, info)
    return buf.getvalue()


def blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    info.mode = 0o644
    add(tar, info, data)
    return f"sha256:{digest}"


def main() -> None:
    busybox_path, pause_path, name, out = sys.argv[1:5]
    with open(busybox_path, "rb") as f, open(pause_path, "rb") as p:
        lay = layer(f.read(), p.read())
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(lay).hexdigest()}"]},
        },
        sort_keys=True,
    ).encode()
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ["blobs", "blobs/sha256"]:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            add(tar, info)
        layer_digest = blob(tar, lay)
        config_digest = blob(tar, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest,
                        "size": len(lay),
                    }
                ],
            },
            sort_keys=True,
        ).encode()
        manifest_digest = blob(tar, manifest)
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": manifest_digest,
                        "size": len(manifest),
                        "platform": {"architecture": "amd64", "os": "linux"},
                        "annotations": {
                            "io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                        },
                    }
                ],
            },
            sort_keys=True,
        ).encode()
        for fname, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)]:
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            info.mode = 0o644
            add(tar, info, data)


if __name__ == "__main__":
    main()
