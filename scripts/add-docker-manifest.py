#!/usr/bin/env python3
"""Makes an OCI image archive loadable by every tool that takes one: adds Docker's manifest.json
beside the OCI index, and containerd's image-name annotation to the index, as `docker save` writes
its archives since Docker 25. Docker before 25 reads only manifest.json; Docker 25 and later,
containerd (`kind load image-archive`, `ctr images import`) and podman read index.json and its
annotations.

Usage: add-docker-manifest.py ARCHIVE NAME:TAG   (rewrites ARCHIVE in place)
"""
import io
import json
import os
import sys
import tarfile
import tempfile


def blob_path(digest):
    algorithm, _, hexdigest = digest.partition(":")
    if not hexdigest:
        raise SystemExit(f"add-docker-manifest: malformed digest {digest!r}")
    return f"blobs/{algorithm}/{hexdigest}"


def main(archive, reference):
    if ":" not in reference:
        raise SystemExit(f"add-docker-manifest: {reference!r} is not NAME:TAG")
    with tarfile.open(archive) as source:
        members = {m.name.removeprefix("./"): m for m in source.getmembers()}
        if "index.json" not in members:
            raise SystemExit(f"add-docker-manifest: {archive} has no index.json (not an OCI archive)")
        index = json.load(source.extractfile(members["index.json"]))
        manifests = index.get("manifests", [])
        if len(manifests) != 1:
            raise SystemExit(f"add-docker-manifest: {archive} holds {len(manifests)} images, not one")
        manifest = json.load(source.extractfile(members[blob_path(manifests[0]["digest"])]))
        docker_manifest = [{
            "Config": blob_path(manifest["config"]["digest"]),
            "RepoTags": [reference],
            "Layers": [blob_path(layer["digest"]) for layer in manifest["layers"]],
        }]
        name, _, tag = reference.rpartition(":")
        annotations = manifests[0].setdefault("annotations", {})
        annotations["io.containerd.image.name"] = f"docker.io/library/{name}:{tag}"
        annotations["org.opencontainers.image.ref.name"] = tag

        directory = os.path.dirname(os.path.abspath(archive))
        with tempfile.NamedTemporaryFile(dir=directory, delete=False) as handle:
            rewritten = handle.name
        try:
            with tarfile.open(rewritten, "w", format=tarfile.PAX_FORMAT) as target:
                for member in source.getmembers():
                    if member.name.removeprefix("./") in ("index.json", "manifest.json"):
                        continue
                    target.addfile(member, source.extractfile(member) if member.isfile() else None)
                for file_name, content in (("index.json", index), ("manifest.json", docker_manifest)):
                    data = json.dumps(content, separators=(",", ":")).encode()
                    info = tarfile.TarInfo(file_name)
                    info.size, info.mode = len(data), 0o644
                    target.addfile(info, io.BytesIO(data))
            os.chmod(rewritten, 0o644)
            os.replace(rewritten, archive)
        finally:
            if os.path.exists(rewritten):
                os.unlink(rewritten)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
