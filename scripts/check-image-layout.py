#!/usr/bin/env python3
"""Compares what a Dockerfile under docker/ would build with the image scripts/build-images.sh
built: the files the Dockerfile puts in its final stage, its user, entrypoint, command, working
directory, environment and ports. The two must agree, so that the chart and the docs hold for
whichever of them a platform team runs.

The Dockerfile is read, not built (there is no Docker engine here): the files of the target stage
(and of the stages it is FROM) are followed from the build stage's `cp ... /out...` and
`ln -s ... /out...` into `COPY --from=build`.
What distroless's cc-debian12:nonroot base brings (its environment, the nonroot user, CA
certificates, /tmp) is listed below, as that image documents it.

Usage: check-image-layout.py DOCKERFILE[:TARGET] ARCHIVE   (an OCI archive from build-images.sh;
       TARGET a stage, by default the last)
"""
import json
import posixpath
import re
import shlex
import sys
import tarfile

DISTROLESS_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
}
DISTROLESS_FILES = {"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt"}
# What a built image may hold beyond the Dockerfile's files: the shared libraries and the loader
# (distroless's cc image has them too), and the base's own files.
BASE_PREFIXES = ("lib/", "lib64", "usr/lib/", "usr/lib64/", "etc/")


def instructions(dockerfile):
    """The Dockerfile's instructions as (KEYWORD, text), continuation lines joined."""
    text = re.sub(r"\\\n", " ", open(dockerfile).read())
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            yield keyword.upper(), rest.strip()


def new_stage(parent=None):
    stage = {"run": [], "copy": [], "env": {}, "user": None, "entrypoint": None, "cmd": None,
             "workdir": None, "expose": set()}
    if parent:
        for key, value in parent.items():
            stage[key] = value.copy() if hasattr(value, "copy") else value
    return stage


def stages_of(dockerfile):
    """Each stage by name (and by index), a stage FROM another inheriting what it had."""
    stages, ordered, current = {}, [], None
    for keyword, rest in instructions(dockerfile):
        if keyword == "FROM":
            words = rest.split()
            base = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            current = new_stage(stages.get(base))
            ordered.append(current)
            if name:
                stages[name] = current
        elif current is None:
            continue
        elif keyword == "RUN":
            current["run"].append(rest)
        elif keyword == "COPY":
            current["copy"].append(shlex.split(rest))
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                current["env"][name] = value
        elif keyword == "USER":
            current["user"] = rest
        elif keyword == "ENTRYPOINT":
            current["entrypoint"] = json.loads(rest)
        elif keyword == "CMD":
            current["cmd"] = json.loads(rest)
        elif keyword == "WORKDIR":
            current["workdir"] = rest
        elif keyword == "EXPOSE":
            current["expose"].update(p if "/" in p else f"{p}/tcp" for p in rest.split())
    return stages, ordered


def outputs(stage):
    """What a build stage leaves under /out: `cp [-r] SOURCE... DEST` and `ln -s TARGET LINK`."""
    out = {}
    for command in stage["run"]:
        for step in re.split(r"&&|;", command):
            words = shlex.split(step)
            if not words or words[0] not in ("cp", "ln"):
                continue
            *sources, destination = [w for w in words[1:] if not w.startswith("-")]
            if not destination.startswith("/out"):
                continue
            if words[0] == "ln":
                out[destination] = posixpath.basename(destination)
                continue
            for source in sources:
                name = posixpath.basename(source.rstrip("/"))
                out[destination.rstrip("/") + "/" + name if destination.endswith("/") else destination] = name
    return out


def expected(dockerfile, target):
    stages, ordered = stages_of(dockerfile)
    if target and target not in stages:
        raise SystemExit(f"{dockerfile}: no stage {target}")
    final = stages[target] if target else ordered[-1]
    files = set()
    for words in final["copy"]:
        origin = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
        if origin not in stages:
            raise SystemExit(f"{dockerfile}: COPY from {origin!r}, not a stage of the file, is not followed")
        out = outputs(stages[origin])
        *sources, destination = [w for w in words if not w.startswith("--")]
        for source in sources:
            source = source.rstrip("/")
            for path in out:
                if path == source:
                    target_path = destination.rstrip("/") + "/" + posixpath.basename(path) if destination.endswith("/") else destination
                elif path.startswith(source + "/"):
                    target_path = destination.rstrip("/") + "/" + path[len(source) + 1:]
                else:
                    continue
                files.add(target_path.lstrip("/"))
    return {
        "files": files | DISTROLESS_FILES,
        "user": final["user"],
        "env": {**DISTROLESS_ENV, **final["env"]},
        "entrypoint": final["entrypoint"],
        "cmd": final["cmd"],
        "workdir": final["workdir"] or "/",
        "expose": final["expose"],
    }


def built(archive):
    with tarfile.open(archive) as tar:
        def read(path):
            try:
                return tar.extractfile(path.removeprefix("./")).read()
            except KeyError:
                raise SystemExit(f"{archive}: no {path} in the archive (not an image from build-images.sh?)")
        index = json.loads(read("index.json"))
        digest = index["manifests"][0]["digest"].replace(":", "/")
        manifest = json.loads(read(f"blobs/{digest}"))
        config = json.loads(read("blobs/" + manifest["config"]["digest"].replace(":", "/")))["config"]
        files = set()
        for layer in manifest["layers"]:
            blob = tar.extractfile("blobs/" + layer["digest"].replace(":", "/"))
            with tarfile.open(fileobj=blob, mode="r|*") as contents:
                files.update(m.name.removeprefix("./").rstrip("/") for m in contents if not m.isdir())
    env = dict(pair.split("=", 1) for pair in config.get("Env") or [])
    return {
        "files": files,
        "user": config.get("User"),
        "env": env,
        "entrypoint": config.get("Entrypoint"),
        "cmd": config.get("Cmd"),
        "workdir": config.get("WorkingDir") or "/",
        "expose": set(config.get("ExposedPorts") or {}),
    }


def main(dockerfile, archive):
    dockerfile, _, target = dockerfile.partition(":")
    want, have = expected(dockerfile, target or None), built(archive)
    problems = []
    # A path the Dockerfile copies may be a directory: the files under it are its contents.
    def under(path, paths):
        return path in paths or any(path.startswith(p + "/") for p in paths)

    for path in sorted(want["files"]):
        if not (path in have["files"] or any(f.startswith(path + "/") for f in have["files"])):
            problems.append(f"{path}: in the Dockerfile's image, not in the built one")
    for path in sorted(have["files"]):
        if not under(path, want["files"]) and not path.startswith(BASE_PREFIXES):
            problems.append(f"{path}: in the built image, not in the Dockerfile's")
    for field in ("user", "env", "entrypoint", "cmd", "workdir", "expose"):
        if want[field] != have[field]:
            problems.append(f"{field}: the Dockerfile gives {want[field]!r}, the built image {have[field]!r}")
    name = posixpath.basename(dockerfile)
    if problems:
        print(f"check-image-layout: {name} and {posixpath.basename(archive)} differ:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(1)
    print(f"check-image-layout: {name} and {posixpath.basename(archive)} agree "
          f"({len(want['files'])} paths, user {have['user']}, entrypoint {have['entrypoint']})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
