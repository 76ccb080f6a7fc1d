#!/usr/bin/env bash
# Checks Siren's packaging without Docker or a cluster of its own:
#
#   static   the chart's and config/crd's CRD copies equal crds/trainingjob.yaml; every YAML file
#            that is not a template parses; values.schema.json is a valid schema, accepts values.yaml
#            and rejects wrong values; docs/api-reference.md is fresh; `helm lint`; `kubectl kustomize
#            config/operator`.
#   cluster  a real kube-apiserver on loopback (e2e/kube/build-apiserver.sh builds it from Debian's
#            source package, once per machine): `helm install` with default values and with
#            watchNamespace and every optional value set; the default render equals config/operator's
#            objects; `kubectl apply --dry-run=server -k config/operator`; the operator's
#            ServiceAccount has exactly the permissions it needs (`kubectl auth can-i`); the chart
#            sets no environment variable the operator does not read; values the chart must refuse
#            are refused; and, when a built `siren-operator` is at hand, the real operator runs a
#            small job to Succeeded with nothing but those permissions; then, on a second fresh API
#            server, `kubectl apply -k config/operator` for real and the same operator run under the
#            permissions the plain manifests grant.
#   image    with --operator-image, the built image runs as a container (podman) the way a kubelet
#            starts the chart's default Deployment: its args, env, security contexts, emptyDirs,
#            limits and probes, in-cluster configuration with a real ServiceAccount token (no
#            impersonation), host network; it runs a Fashion-MNIST job on the process backend (its
#            siren-worker processes, a redis-server on loopback as the store) with the chart's RBAC.
#
# Helm is the Helm Go library bundled in PyPI's helm-sdkpy wheel (linux x86_64), driven through
# cffi: there is no helm binary in Debian or on the registries this project reaches.
#
# Usage: scripts/check-packaging.sh [--static] [--update] [--require-operator] [--operator-image REF]
#   --static             only the static checks (no API server, no Helm install)
#   --update             copy crds/trainingjob.yaml to the chart and config/crd, rewrite
#                        config/operator's generated manifests from the chart's default render and
#                        docs/api-reference.md, then check
#   --require-operator   fail, instead of skipping the operator run, when there is no operator
#                        binary, no Helm library or no API server (scripts/test.sh, after cargo test)
#   --operator-image REF also run the image REF (already in podman's local storage, e.g.
#                        localhost/siren-operator:0.1.0; it stands for the chart's default image
#                        siren-operator:<appVersion>) as the chart's pod; needs podman, redis-server
#                        and 127.0.0.1:8080 free (the container uses the host's network)
# Environment: SIREN_OPERATOR_BIN (the operator binary for the run check; default:
# ${CARGO_TARGET_DIR:-~/.cache/siren/target}/release/siren-operator), SIREN_KUBE_APISERVER and
# SIREN_KUBECTL (default: the ones e2e/kube/build-apiserver.sh builds). podman is used as it is on
# PATH: CONTAINERS_CONF and CONTAINERS_STORAGE_CONF (scripts/deps.sh's siren_container_tools) select
# its runtime, cgroup manager and storage.
set -euo pipefail
cd "$(dirname "$0")/.."

static_only=false
update=false
require_operator=false
operator_image=""
usage="usage: $0 [--static] [--update] [--require-operator] [--operator-image REF]"
while [ $# -gt 0 ]; do
  case "$1" in
    --static) static_only=true ;;
    --update) update=true ;;
    --require-operator) require_operator=true ;;
    --operator-image)
      [ $# -ge 2 ] && [ -n "$2" ] || { echo "$usage" >&2; exit 2; }
      operator_image="$2"
      shift
      ;;
    --operator-image=?*) operator_image="${1#--operator-image=}" ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
if $static_only && $require_operator; then
  echo "$0: --static skips the operator run that --require-operator requires" >&2
  exit 2
fi
if $static_only && [ -n "$operator_image" ]; then
  echo "$0: --static skips the container run that --operator-image asks for" >&2
  exit 2
fi

log() { echo "check-packaging: $*" >&2; }

# PyYAML, jsonschema and cffi (Siren's Python environment), the Helm library, and the
# kube-apiserver and kubectl built from one source tree: kubectl is called by path, never the one
# on PATH.
source scripts/deps.sh
siren_python_env
helm_lib="$(siren_helm_library)"
[ -n "$helm_lib" ] || log "no Helm library for $(uname -s)-$(uname -m): helm lint and the cluster checks are skipped"
if [ -z "${SIREN_KUBECTL:-}" ] || [ -z "${SIREN_KUBE_APISERVER:-}" ]; then
  siren_kube_tools
fi
# The podman settings the images were built with (scripts/build-images.sh), whoever calls this.
[ -z "$operator_image" ] || siren_container_tools
apiserver=""
if ! $static_only && [ -n "$helm_lib" ]; then
  apiserver="$SIREN_KUBE_APISERVER"
fi
export SIREN_KUBECTL

operator_bin="${SIREN_OPERATOR_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/siren/target}/release/siren-operator}"

exec python3 - "$helm_lib" "$apiserver" "$operator_bin" "$update" "$require_operator" "$operator_image" <<'PY'
"""The checks themselves; see the header of scripts/check-packaging.sh."""
import collections
import datetime
import difflib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import yaml

HELM_LIB, APISERVER, OPERATOR_BIN = sys.argv[1], sys.argv[2], sys.argv[3]
KUBECTL = os.environ["SIREN_KUBECTL"]
UPDATE, REQUIRE_OPERATOR = sys.argv[4] == "true", sys.argv[5] == "true"
# The image the container run starts; empty: no container run.
OPERATOR_IMAGE = sys.argv[6]
ROOT = Path.cwd()
CHART = ROOT / "charts/siren"
CRD = ROOT / "crds/trainingjob.yaml"
CRD_COPIES = [CHART / "crds/trainingjob.yaml", ROOT / "config/crd/trainingjob.yaml"]
OPERATOR_DIR = ROOT / "config/operator"
# Labels that only say how the objects were installed.
INSTALL_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
# config/operator's generated files, by kind.
GENERATED = {
    "ServiceAccount": "serviceaccount.yaml",
    "ClusterRole": "clusterrole.yaml",
    "ClusterRoleBinding": "clusterrolebinding.yaml",
    "Role": "role.yaml",
    "RoleBinding": "rolebinding.yaml",
    "Deployment": "deployment.yaml",
    "Service": "service.yaml",
}

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name}" + (f"\n     {detail}" if detail else ""), flush=True)
    return ok


def run(args, input=None, env=None, timeout=120):
    return subprocess.run(args, input=input, capture_output=True, text=True, env=env, timeout=timeout)


class Loader(yaml.SafeLoader):
    """YAML 1.2 floats, as the API server and kustomize read them (`9e-6` is a number)."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)


def load(text):
    return yaml.load(text, Loader=Loader)


def docs(text):
    return [d for d in yaml.load_all(text, Loader=Loader) if d]


def key(obj):
    meta = obj.get("metadata", {})
    return (obj.get("kind"), meta.get("namespace", ""), meta.get("name"))


def normalised(obj):
    obj = json.loads(json.dumps(obj))
    labels = obj.get("metadata", {}).get("labels", {})
    for label in INSTALL_LABELS:
        labels.pop(label, None)
    return obj


def strip_install_labels(text):
    pattern = re.compile(r"^\s+(%s):.*\n" % "|".join(re.escape(l) for l in INSTALL_LABELS), re.M)
    return pattern.sub("", text)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} does not listen on {port}")


# Probes and /metrics are local: a proxy from the environment must not see them.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(port, path, timeout=2):
    """(status, body) of GET http://127.0.0.1:port/path; status None when nothing answers."""
    try:
        with HTTP.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return None, ""


# ---------------------------------------------------------------- Helm, through helm-sdkpy's library
class Helm:
    def __init__(self, library):
        from cffi import FFI

        self.ffi = FFI()
        self.ffi.cdef(
            """
            typedef unsigned long long helm_sdkpy_handle;
            int helm_sdkpy_config_create(const char *namespace, const char *kubeconfig,
                const char *kubecontext, const char *options_json, helm_sdkpy_handle *handle_out);
            void helm_sdkpy_config_destroy(helm_sdkpy_handle handle);
            int helm_sdkpy_install(helm_sdkpy_handle handle, const char *release_name,
                const char *chart_path, const char *values_json, const char *version,
                const char *options_json, char **result_json);
            int helm_sdkpy_lint(helm_sdkpy_handle handle, const char *chart_path, char **result_json);
            const char *helm_sdkpy_last_error(void);
            void helm_sdkpy_free(void *ptr);
            """
        )
        self.lib = self.ffi.dlopen(library)

    def _config(self, namespace, kubeconfig):
        handle = self.ffi.new("helm_sdkpy_handle *")
        if self.lib.helm_sdkpy_config_create(namespace.encode(), kubeconfig.encode(), b"", b"{}", handle):
            raise RuntimeError(self._error())
        return handle[0]

    def _error(self):
        error = self.lib.helm_sdkpy_last_error()
        return self.ffi.string(error).decode() if error != self.ffi.NULL else "unknown error"

    def _result(self, out):
        text = self.ffi.string(out[0]).decode()
        self.lib.helm_sdkpy_free(out[0])
        return json.loads(text)

    def lint(self, chart):
        handle = self._config("default", "")
        out = self.ffi.new("char **")
        try:
            if self.lib.helm_sdkpy_lint(handle, str(chart).encode(), out):
                raise RuntimeError(self._error())
            return self._result(out)
        finally:
            self.lib.helm_sdkpy_config_destroy(handle)

    def install(self, kubeconfig, namespace, release, chart, values=None, release_info=False):
        """Installs for real (no waiting for pods: nothing runs them) and returns the manifest (or,
        with release_info, the whole release)."""
        handle = self._config(namespace, str(kubeconfig))
        out = self.ffi.new("char **")
        options = {
            "create_namespace": True,
            "wait": False,
            "timeout_seconds": 120,
            "server_side_apply": "false",
            "disable_openapi_validation": False,
        }
        try:
            code = self.lib.helm_sdkpy_install(
                handle, release.encode(), str(chart).encode(),
                json.dumps(values).encode() if values else b"", b"",
                json.dumps(options).encode(), out,
            )
            if code:
                raise RuntimeError(self._error())
            result = self._result(out)
            return result if release_info else result["manifest"]
        finally:
            self.lib.helm_sdkpy_config_destroy(handle)


# ---------------------------------------------------------------- a control plane on loopback
AUDIT_POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources: [{group: coordination.k8s.io, resources: [leases]}]
  - level: None
"""


class ControlPlane:
    def __init__(self, apiserver):
        self.dir = Path(tempfile.mkdtemp(prefix="siren-packaging-"))
        self.children = []
        etcd_port, peer_port, port = free_port(), free_port(), free_port()
        client, peer = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        self._spawn(["etcd", "--data-dir", str(self.dir / "etcd"),
                     "--listen-client-urls", client, "--advertise-client-urls", client,
                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                     "--initial-cluster", f"default={peer}"], "etcd.log")
        (self.dir / "tokens.csv").write_text("siren-packaging-admin,admin,admin,system:masters\n")
        # Who wrote the leader-election Lease: the container run's evidence that the operator
        # authenticated with its ServiceAccount token and not through impersonation.
        (self.dir / "audit-policy.yaml").write_text(AUDIT_POLICY)
        key = self.dir / "service-accounts.key"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        wait_for_port(etcd_port, "etcd")
        self._spawn([apiserver, f"--etcd-servers={client}",
                     "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                     f"--secure-port={port}", "--insecure-port=0",
                     f"--cert-dir={self.dir / 'certs'}", f"--token-auth-file={self.dir / 'tokens.csv'}",
                     "--authorization-mode=RBAC",
                     f"--service-account-key-file={key}", f"--service-account-signing-key-file={key}",
                     "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                     "--service-cluster-ip-range=10.96.0.0/16",
                     "--endpoint-reconciler-type=none", "--enable-priority-and-fairness=false",
                     f"--audit-policy-file={self.dir / 'audit-policy.yaml'}",
                     f"--audit-log-path={self.audit_log}"],
                    "apiserver.log")
        self.kubeconfig = self.dir / "kubeconfig"
        self.kubeconfig.write_text(self._kubeconfig(port))
        deadline = time.time() + 90
        while run([KUBECTL, "--kubeconfig", str(self.kubeconfig), "get", "--raw", "/readyz"]).returncode:
            if time.time() > deadline or any(c.poll() is not None for c in self.children):
                raise RuntimeError("kube-apiserver never became ready:\n"
                                   + (self.dir / "apiserver.log").read_text()[-3000:])
            time.sleep(0.5)
        self.port = port

    def _spawn(self, args, log):
        with open(self.dir / log, "w") as out:
            self.children.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=out))

    @property
    def audit_log(self):
        return self.dir / "audit.log"

    def _kubeconfig(self, port, impersonate=None):
        user = {"token": "siren-packaging-admin"}
        if impersonate:
            namespace = impersonate.split(":")[2]
            user["as"] = impersonate
            user["as-groups"] = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                                 "system:authenticated"]
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "packaging",
            "clusters": [{"name": "packaging", "cluster": {
                "server": f"https://127.0.0.1:{port}",
                "certificate-authority": str(self.dir / "certs/apiserver.crt")}}],
            "users": [{"name": "admin", "user": user}],
            "contexts": [{"name": "packaging", "context": {"cluster": "packaging", "user": "admin",
                                                          "namespace": "default"}}],
        })

    def kubeconfig_as(self, user):
        path = self.dir / f"kubeconfig-{user.replace(':', '_')}"
        path.write_text(self._kubeconfig(self.port, impersonate=user))
        return path

    def kubectl(self, *args, input=None):
        return run([KUBECTL, "--kubeconfig", str(self.kubeconfig), *args], input=input)

    def stop(self):
        for child in reversed(self.children):
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- static checks
def static_checks(helm):
    crd_text = CRD.read_bytes()
    for copy in CRD_COPIES:
        if UPDATE and copy.parent.is_dir():
            copy.write_bytes(crd_text)
        check(f"{copy.relative_to(ROOT)} equals crds/trainingjob.yaml",
              copy.is_file() and copy.read_bytes() == crd_text,
              f"cp crds/trainingjob.yaml {copy.relative_to(ROOT)}")

    plain = [CHART / "Chart.yaml", CHART / "values.yaml", *CRD_COPIES,
             *sorted(OPERATOR_DIR.glob("*.yaml")), *sorted((ROOT / "config/samples").glob("*.yaml"))]
    for path in plain:
        try:
            loaded = docs(path.read_text())
            check(f"{path.relative_to(ROOT)} parses", bool(loaded), "no YAML document")
        except (OSError, yaml.YAMLError) as error:
            check(f"{path.relative_to(ROOT)} parses", False, str(error))

    schema = json.loads((CHART / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    try:
        jsonschema.Draft7Validator.check_schema(schema)
        check("values.schema.json is a draft-07 schema", True)
    except jsonschema.SchemaError as error:
        check("values.schema.json is a draft-07 schema", False, error.message)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(values)]
    check("values.yaml satisfies values.schema.json", not errors, "; ".join(errors))
    described = set(schema["properties"]) - {"global"}
    check("values.schema.json describes every value and no other", set(values) == described,
          f"only in values.yaml: {sorted(set(values) - described)}; only in the schema: {sorted(described - set(values))}")
    for wrong in ({"replicaCount": "two"}, {"watchNamespace": "Team_A"}, {"image": {"pullPolicy": "Sometimes"}},
                  {"leaderElection": {"enabled": True, "leaseSecs": 15}}, {"aws": {"region": "eu-west-1", "bucket": "jobs"}}):
        merged = {**values, **wrong}
        check(f"values.schema.json rejects {json.dumps(wrong)}", not validator.is_valid(merged))

    script = run([sys.executable, "scripts/api-reference.py", "--write" if UPDATE else "--check"])
    check("docs/api-reference.md is generated from crds/trainingjob.yaml", script.returncode == 0,
          (script.stdout + script.stderr).strip())

    if helm:
        result = helm.lint(CHART)
        # Severities: 1 info, 2 warning, 3 error.
        worst = max([m.get("Severity", 0) for m in result.get("Messages") or []], default=0)
        check("helm lint charts/siren", not result.get("Errors") and worst < 2, json.dumps(result))

    if UPDATE and helm and APISERVER:
        return []  # config/operator is rewritten (and built) by the cluster checks
    built = run([KUBECTL, "kustomize", str(OPERATOR_DIR)])
    check("kubectl kustomize config/operator", built.returncode == 0, built.stderr.strip())
    return docs(built.stdout) if built.returncode == 0 else []


# ---------------------------------------------------------------- cluster checks
def write_generated(manifest):
    by_file = {}
    for text in re.split(r"^---\s*$", manifest, flags=re.M):
        loaded = load(text)
        if not loaded:
            continue
        name = GENERATED.get(loaded["kind"])
        if name is None:
            raise RuntimeError(f"the default render has a {loaded['kind']}: add it to GENERATED")
        body = strip_install_labels(re.sub(r"^# Source: .*\n", "", text.strip("\n") + "\n", flags=re.M))
        by_file.setdefault(name, []).append(body)
    for name, bodies in by_file.items():
        header = ("# Generated from charts/siren (release `siren`, namespace `siren-system`, default values)\n"
                  "# by scripts/check-packaging.sh --update: change the chart, not this file.\n")
        (OPERATOR_DIR / name).write_text(header + "---\n".join(bodies))
        print(f"     wrote config/operator/{name}")


def compare_with_kustomize(manifest, kustomized):
    rendered = {key(o): normalised(o) for o in docs(manifest)}
    crds = [o for o in kustomized if o["kind"] == "CustomResourceDefinition"]
    check("config/operator installs the CRD of crds/trainingjob.yaml",
          len(crds) == 1 and crds[0] == load(CRD.read_text()))
    namespaces = [o["metadata"]["name"] for o in kustomized if o["kind"] == "Namespace"]
    check("config/operator creates the namespace siren-system", namespaces == ["siren-system"], str(namespaces))
    plain = {key(o): normalised(o) for o in kustomized
             if o["kind"] not in ("CustomResourceDefinition", "Namespace")}
    check("config/operator has the objects of the chart's default render", set(plain) == set(rendered),
          f"only in config/operator: {sorted(set(plain) - set(rendered))}; "
          f"only in the chart: {sorted(set(rendered) - set(plain))}")
    for k in sorted(set(plain) & set(rendered)):
        a = yaml.safe_dump(rendered[k], sort_keys=True).splitlines()
        b = yaml.safe_dump(plain[k], sort_keys=True).splitlines()
        check(f"config/operator's {k[0]} {k[2]} equals the chart's", a == b,
              "\n     ".join(difflib.unified_diff(a, b, "chart", "config/operator", lineterm="")))


def read_by_code(name):
    """Whether an environment variable's name appears, quoted, in the workspace's Rust sources."""
    needle = f'"{name}"'
    return any(needle in path.read_text(errors="replace")
               for crate in ("crds", "data", "store", "worker", "scheduler", "driver", "operator", "cli")
               for path in (ROOT / crate / "src").rglob("*.rs"))


def can_i(plane, user, verb, resource, namespace=None, subresource=None):
    args = ["auth", "can-i", verb, resource, f"--as={user}",
            "--as-group=system:serviceaccounts", f"--as-group=system:serviceaccounts:{user.split(':')[2]}"]
    if subresource:
        args.append(f"--subresource={subresource}")
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    return plane.kubectl(*args).stdout.strip() == "yes"


JOB_PERMISSIONS = [
    ("get", "trainingjobs.siren.dev", None), ("list", "trainingjobs.siren.dev", None),
    ("watch", "trainingjobs.siren.dev", None), ("patch", "trainingjobs.siren.dev", None),
    ("update", "trainingjobs.siren.dev", None), ("delete", "trainingjobs.siren.dev", None),
    ("patch", "trainingjobs.siren.dev", "status"), ("update", "trainingjobs.siren.dev", "status"),
    ("update", "trainingjobs.siren.dev", "finalizers"),
    ("create", "events.events.k8s.io", None), ("patch", "events.events.k8s.io", None),
    ("create", "events", None), ("patch", "events", None), ("get", "secrets", None),
]
BACKEND_PERMISSIONS = [
    ("create", "services.serving.knative.dev", None), ("patch", "services.serving.knative.dev", None),
    ("delete", "services.serving.knative.dev", None), ("create", "secrets", None),
    ("patch", "secrets", None), ("delete", "secrets", None),
]
NEVER = [
    ("create", "trainingjobs.siren.dev", None), ("create", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("list", "secrets", None), ("create", "pods", None), ("get", "configmaps", None),
    ("create", "services", None), ("delete", "leases.coordination.k8s.io", None),
]


def rbac_checks(plane, user, own_namespace, job_namespace, other_namespace, backends):
    for verb, resource, sub in JOB_PERMISSIONS + (BACKEND_PERMISSIONS if backends else []):
        what = f"{verb} {resource}{'/' + sub if sub else ''}"
        check(f"{user} may {what} in {job_namespace}", can_i(plane, user, verb, resource, job_namespace, sub))
    if other_namespace:
        check(f"{user} may not touch trainingjobs in {other_namespace}",
              not can_i(plane, user, "list", "trainingjobs.siren.dev", other_namespace))
    if not backends:
        for verb, resource, sub in BACKEND_PERMISSIONS:
            check(f"{user} may not {verb} {resource} (backends off)", not can_i(plane, user, verb, resource, job_namespace))
    for verb, resource, sub in NEVER:
        check(f"{user} may not {verb} {resource}", not can_i(plane, user, verb, resource, job_namespace, sub))
    for verb in ("get", "create", "update"):
        check(f"{user} may {verb} leases in {own_namespace}",
              can_i(plane, user, verb, "leases.coordination.k8s.io", own_namespace))
    check(f"{user} may not update leases outside {own_namespace}",
          not can_i(plane, user, "update", "leases.coordination.k8s.io", job_namespace))


# Stand-ins for the CRDs of Knative Serving and the Prometheus Operator, so that the API server knows
# their kinds (kubectl auth can-i, helm install of a ServiceMonitor).
KNATIVE_SERVICE_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: services.serving.knative.dev}
spec:
  group: serving.knative.dev
  scope: Namespaced
  names: {kind: Service, plural: services, singular: service, listKind: ServiceList, shortNames: [ksvc]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""
SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor, listKind: ServiceMonitorList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""

# ---------------------------------------------------------------- the operator runs a job
# What operator_run submits: the manifest, the epochs it runs and how long it may take.
Job = collections.namedtuple("Job", "name manifest epochs timeout")

# A job small enough to finish in seconds on the operator's own threads.
SMALL_JOB = Job("packaging-check", """
apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata: {name: packaging-check}
spec:
  model: {kind: logistic}
  dataset: {synthetic: {samples: 2000, features: 8, classes: 3, testSamples: 200}, shardSize: 500}
  training: {maxEpochs: 2}
  scheduler: {functions: 2, memoryMb: 1769}
""", 2, 180)


def image_job(redis_url):
    """The container run's job: the image's own Fashion-MNIST (cut short) and its siren-worker
    binary (the process backend), so that it proves the image's layout. Process functions are other
    processes, so the parameters go through a store they share: a redis-server on loopback, which
    the container reaches over the host's network."""
    return Job("packaging-image", f"""
apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata: {{name: packaging-image}}
spec:
  model: {{kind: mlp, hidden: [32]}}
  dataset: {{builtin: fashion-mnist, maxTrainSamples: 2000, maxTestSamples: 500, shardSize: 500}}
  training: {{maxEpochs: 1}}
  scheduler: {{functions: 2, memoryMb: 1769}}
  backend: {{kind: process}}
  store: {{kind: redis, url: "{redis_url}"}}
""", 1, 300)


class OperatorProcess:
    """The built binary as a plain process, with a kubeconfig that impersonates the ServiceAccount."""

    title = "the operator"
    identity = "siren-packaging-check"
    ready_timeout = 60

    def __init__(self, plane, namespace, service_account):
        self.port = free_port()
        self.log_path = plane.dir / "operator.log"
        kubeconfig = plane.kubeconfig_as(f"system:serviceaccount:{namespace}:{service_account}")
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": namespace,
                    "POD_NAME": self.identity, "SIREN_LOG": "info",
                    "SIREN_STATE_DIR": str(plane.dir / "state")}
        self.env.pop("SIREN_WATCH_NAMESPACE", None)
        self.process = None

    def start(self):
        """None once started, else what went wrong."""
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [OPERATOR_BIN, "--leader-election=true", f"--probe-address=127.0.0.1:{self.port}"],
                env=self.env, stdout=log, stderr=log)
        return None

    def running(self):
        return self.process is not None and self.process.poll() is None

    def ready(self):
        return http_get(self.port, "/readyz")[0] == 200

    def get(self, path):
        return http_get(self.port, path)

    def logs(self):
        return self.log_path.read_text()[-2000:] if self.log_path.exists() else ""

    def extra_checks(self, plane, namespace):
        pass

    def stop(self):
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def operator_run(plane, namespace, operator, job):
    """The real operator, with nothing but the chart's permissions, runs `job` to Succeeded and
    removes its finalizer when it is deleted. `operator` starts, probes and stops it (a process or
    a container)."""
    title = operator.title
    try:
        problem = operator.start()
        if problem is not None:
            check(f"{title} starts", False, f"{problem}\n{operator.logs()}")
            return
        deadline = time.time() + operator.ready_timeout
        while not operator.ready() and time.time() < deadline and operator.running():
            time.sleep(0.5)
        if not check(f"{title} leads and is ready with the chart's permissions", operator.ready(),
                     operator.logs()):
            return
        applied = plane.kubectl("apply", "-n", "default", "-f", "-", input=job.manifest)
        check(f"kubectl apply of the TrainingJob {job.name}", applied.returncode == 0, applied.stderr)
        phase, deadline = "", time.time() + job.timeout
        while time.time() < deadline and phase not in ("Succeeded", "Failed"):
            time.sleep(1)
            phase = plane.kubectl("get", "tj", job.name, "-n", "default",
                                  "-o", "jsonpath={.status.phase}").stdout
        check(f"{title} runs {job.name} to Succeeded", phase == "Succeeded",
              f"phase {phase!r}\n" + plane.kubectl("get", "tj", job.name, "-n", "default", "-o", "yaml").stdout[-2000:]
              + operator.logs())
        # Several runs share the namespace: only this job's events count.
        listed = plane.kubectl("get", "events.events.k8s.io", "-n", "default", "-o", "json").stdout
        reasons = [e.get("reason") for e in json.loads(listed or '{"items": []}')["items"]
                   if (e.get("regarding") or {}).get("name") == job.name]
        check(f"{title} records events of {job.name}", "Started" in reasons and "Scheduled" in reasons,
              str(reasons))
        lease = plane.kubectl("get", "lease", "siren-operator", "-n", namespace, "-o",
                              "jsonpath={.spec.holderIdentity}").stdout
        check(f"{title} holds the Lease siren-operator in {namespace} as {operator.identity}",
              lease == operator.identity, lease)
        metrics = operator.get("/metrics")[1]
        check(f"/metrics counts the epochs of {job.name}",
              f'siren_epochs_finished_total{{namespace="default",name="{job.name}"}} {job.epochs}' in metrics,
              metrics[-1500:])
        operator.extra_checks(plane, namespace)
        plane.kubectl("delete", "tj", job.name, "-n", "default", "--wait=false")
        gone, deadline = False, time.time() + 60
        while not gone and time.time() < deadline:
            time.sleep(1)
            gone = "NotFound" in plane.kubectl("get", "tj", job.name, "-n", "default").stderr
        check(f"{title} removes its finalizer when {job.name} is deleted", gone)
    finally:
        operator.stop()


# ---------------------------------------------------------------- the image as the chart's pod
# What the chart assumes of the cluster and what `podman run` needs to give the container the same
# (found while writing PodmanPod; each is handled where named):
#  - The chart's image `siren-operator:<appVersion>` has no registry: a kubelet's runtime would
#    pull docker.io/library/siren-operator, which nobody publishes. Here --operator-image REF stands
#    for it, with --pull=never (IfNotPresent, the image being present).
#  - No kubelet, no Pod object: POD_NAME is a name chosen here; the token comes from the
#    TokenRequest API unbound (a kubelet's is bound to its pod and rotated). No pod can be created
#    either: the ServiceAccount admission plugin wants a token Secret, which only the absent
#    controller manager makes.
#  - In-cluster configuration: KUBERNETES_SERVICE_HOST/PORT would be the `kubernetes` Service's
#    ClusterIP (10.96.0.1:443, through kube-proxy); here 127.0.0.1 and the API server's port, which
#    its self-signed certificate covers. Token, ca.crt and namespace are files 0644 in a read-only
#    bind mount, so uid 65532 reads them.
#  - Service links (enableServiceLinks defaults to true): a kubelet gives the pod <SERVICE>_SERVICE_HOST,
#    <SERVICE>_PORT=tcp://IP:PORT and the like for every Service of its namespace; for the chart's
#    own Service `siren` they are SIREN_SERVICE_HOST, SIREN_PORT, SIREN_PORT_8080_TCP_ADDR, ... in
#    the operator's own SIREN_ prefix. They are set here as a kubelet sets them.
#  - The pod has a network namespace of its own; the container here shares the host's (the API
#    server and redis-server listen on 127.0.0.1), so 127.0.0.1:8080 must be free, and the probes
#    go to 127.0.0.1 instead of the pod's IP. Its host name is set to the pod's name.
#  - readOnlyRootFilesystem: podman's --read-only also mounts writable tmpfs on /tmp, /run and
#    /var/tmp; Kubernetes does not, so --read-only-tmpfs=false.
#  - emptyDir: podman's --tmpfs is noexec and copies the image's files at the path up into it;
#    an emptyDir is empty and executable, so exec,notmpcopyup. fsGroup has no podman equivalent:
#    the pod's emptyDirs are group fsGroup with the setgid bit, these are mode 1777, and fsGroup is
#    the supplementary group (--group-add) a kubelet gives the container.
#  - podman passes the host's proxy variables into the container (--http-proxy), a kubelet does
#    not; podman limits a container to 2048 processes (pids_limit), a kubelet by default not at all.
#    podman also sets container=podman and TERM=xterm, which no pod has (the operator reads neither).
#  - Memory limit: podman allows as much swap again (--memory-swap twice --memory); a kubelet's
#    node runs without swap, so --memory-swap equals --memory. CPU requests become cpu.shares as a
#    kubelet makes them; memory requests only place the pod, so they have no flag.
#  - seccompProfile RuntimeDefault is podman's default profile (containers-common's), close to but
#    not the same file as containerd's.
#  - runAsNonRoot is the kubelet's check (uid 0 refused); podman has none, so this script checks the
#    user and that the image's own USER is the chart's runAsUser.
#  - Probes: a failing livenessProbe would make a kubelet restart the container; here it fails a
#    check. The readinessProbe is polled more often than its periodSeconds, only to be done sooner.
#  - Stopping: `podman stop --time 15`, not the chart's terminationGracePeriodSeconds (30); the
#    operator, PID 1 in both, must exit on SIGTERM by itself.
#  - No kubelet would run this job's functions in the operator's pod with a redis-server next to it:
#    the process backend needs a store its worker processes share, so redis-server runs on loopback.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The operator's default --probe-address port; the chart's Service and probes name it `http`.
CHART_PORT = 8080
TOKEN_AUDIENCE = "https://kubernetes.default.svc.cluster.local"

# What the translation knows. Fields that only place or pull the pod have no effect on a container
# that is already here; any other field fails the check, so that a chart change cannot go untested.
POD_FIELDS = {"serviceAccountName", "automountServiceAccountToken", "enableServiceLinks",
              "securityContext", "containers", "volumes", "terminationGracePeriodSeconds"}
POD_PLACEMENT_FIELDS = {"imagePullSecrets", "nodeSelector", "tolerations", "affinity", "priorityClassName"}
CONTAINER_FIELDS = {"name", "image", "imagePullPolicy", "args", "env", "ports", "livenessProbe",
                    "readinessProbe", "resources", "securityContext", "volumeMounts"}
POD_SECURITY_FIELDS = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "supplementalGroups",
                       "seccompProfile"}
CONTAINER_SECURITY_FIELDS = {"allowPrivilegeEscalation", "readOnlyRootFilesystem", "runAsNonRoot",
                             "runAsUser", "runAsGroup", "capabilities", "seccompProfile", "privileged"}
PROBE_FIELDS = {"httpGet", "initialDelaySeconds", "periodSeconds", "timeoutSeconds",
                "failureThreshold", "successThreshold"}
# Kubernetes' defaults of the probe fields the chart may leave out.
PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1,
                  "failureThreshold": 3, "successThreshold": 1}
QUANTITY_SUFFIXES = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
                     "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


class Untranslatable(Exception):
    """A part of the chart's pod that this check cannot start as a kubelet would."""


def known_fields(obj, known, where):
    unknown = sorted(set(obj) - known)
    if unknown:
        raise Untranslatable(f"{where}: {', '.join(unknown)} (unknown to scripts/check-packaging.sh's "
                             "translation: teach PodmanPod what a kubelet does with it)")


def quantity(value, where):
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?", str(value))
    if not match:
        raise Untranslatable(f"{where}: cannot read the quantity {value!r}")
    return float(match.group(1)) * QUANTITY_SUFFIXES[match.group(2) or ""]


def service_link_env(services, apiserver_port):
    """The variables a kubelet derives from the Services of the pod's namespace, and from the
    `kubernetes` Service (here: the API server on loopback)."""
    env = {}

    def add(name, address, ports):
        prefix = name.upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"] = address
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
        first = ports[0]
        env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{address}:{first['port']}"
        for port in ports:
            protocol = port.get("protocol", "TCP")
            base = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
            env[base] = f"{protocol.lower()}://{address}:{port['port']}"
            env[f"{base}_PROTO"] = protocol.lower()
            env[f"{base}_PORT"] = str(port["port"])
            env[f"{base}_ADDR"] = address

    for service in services:
        spec = service.get("spec") or {}
        if spec.get("clusterIP") not in (None, "", "None") and spec.get("ports"):
            add(service["metadata"]["name"], spec["clusterIP"], spec["ports"])
    add("kubernetes", "127.0.0.1", [{"name": "https", "port": apiserver_port, "protocol": "TCP"}])
    return env


class PodmanPod:
    """The chart's pod (its one container) as `podman run` options, or Untranslatable naming what
    has no translation."""

    def __init__(self, deployment, namespace, pod_name, service_account, service_env):
        pod = deployment["spec"]["template"]["spec"]
        known_fields(pod, POD_FIELDS | POD_PLACEMENT_FIELDS, "the pod's spec")
        if len(pod.get("containers") or []) != 1:
            raise Untranslatable(f"the pod has {len(pod.get('containers') or [])} containers, not 1")
        container = pod["containers"][0]
        known_fields(container, CONTAINER_FIELDS, f"the container {container.get('name')}")
        if pod.get("serviceAccountName") != service_account:
            raise Untranslatable(f"the pod runs as ServiceAccount {pod.get('serviceAccountName')!r}, "
                                 f"not {service_account!r}")
        if pod.get("automountServiceAccountToken") is False:
            raise Untranslatable("automountServiceAccountToken: false leaves the operator without "
                                 "in-cluster credentials")
        self.image = container.get("image")
        self.args = [str(a) for a in container.get("args") or []]
        self.options = []
        self._security(pod.get("securityContext") or {}, container.get("securityContext") or {})
        self.ports = self._ports(container.get("ports") or [])
        self.env = dict(service_env) if pod.get("enableServiceLinks", True) else {
            k: v for k, v in service_env.items() if k.startswith("KUBERNETES_")}
        self._env(container.get("env") or [], namespace, pod_name)
        self._volumes(container.get("volumeMounts") or [], pod.get("volumes") or [])
        self._resources(container.get("resources") or {})
        if "readinessProbe" not in container:
            raise Untranslatable("the container has no readinessProbe: nothing says when the operator leads")
        self.readiness = self._probe(container["readinessProbe"], "readinessProbe")
        self.liveness = self._probe(container["livenessProbe"], "livenessProbe") if "livenessProbe" in container else None
        for text in self.args + list(self.env.values()):
            if "$(" in text:
                raise Untranslatable(f"{text!r}: a kubelet expands $(VAR) in args and env, podman does not")

    def _security(self, pod_context, context):
        known_fields(pod_context, POD_SECURITY_FIELDS, "the pod's securityContext")
        known_fields(context, CONTAINER_SECURITY_FIELDS, "the container's securityContext")
        # The container's settings win over the pod's, field by field.
        merged = {**{k: v for k, v in pod_context.items() if k not in ("fsGroup", "supplementalGroups")},
                  **context}
        self.uid, self.gid = merged.get("runAsUser"), merged.get("runAsGroup")
        self.run_as_non_root = bool(merged.get("runAsNonRoot"))
        if self.uid is not None:
            self.options += ["--user", f"{self.uid}:{self.gid}" if self.gid is not None else str(self.uid)]
        elif self.gid is not None:
            raise Untranslatable("runAsGroup without runAsUser")
        for group in ([pod_context["fsGroup"]] if "fsGroup" in pod_context else []) + list(pod_context.get("supplementalGroups") or []):
            self.options += ["--group-add", str(group)]
        if merged.get("privileged"):
            raise Untranslatable("privileged: true")
        if merged.get("allowPrivilegeEscalation") is False:
            self.options += ["--security-opt", "no-new-privileges"]
        if merged.get("readOnlyRootFilesystem"):
            self.options += ["--read-only", "--read-only-tmpfs=false"]
        capabilities = merged.get("capabilities") or {}
        known_fields(capabilities, {"drop", "add"}, "securityContext.capabilities")
        if capabilities.get("add"):
            raise Untranslatable(f"securityContext.capabilities.add: {capabilities['add']}")
        for capability in capabilities.get("drop") or []:
            self.options += ["--cap-drop", str(capability).lower()]
        seccomp = merged.get("seccompProfile") or {"type": "RuntimeDefault"}
        if seccomp != {"type": "RuntimeDefault"}:
            if seccomp == {"type": "Unconfined"}:
                self.options += ["--security-opt", "seccomp=unconfined"]
            else:
                raise Untranslatable(f"securityContext.seccompProfile: {json.dumps(seccomp)}")

    def _ports(self, ports):
        by_name = {}
        for port in ports:
            known_fields(port, {"name", "containerPort", "protocol"}, f"the container port {port.get('name')}")
            if port.get("protocol", "TCP") != "TCP":
                raise Untranslatable(f"the container port {port.get('name')}: protocol {port['protocol']}")
            by_name[port.get("name") or str(port["containerPort"])] = int(port["containerPort"])
        return by_name

    def _env(self, env, namespace, pod_name):
        fields = {"metadata.namespace": namespace, "metadata.name": pod_name}
        for variable in env:
            name = variable["name"]
            known_fields(variable, {"name", "value", "valueFrom"}, f"env {name}")
            if "valueFrom" in variable:
                source = variable["valueFrom"] or {}
                field = source.get("fieldRef") or {}
                if set(source) != {"fieldRef"} or set(field) - {"fieldPath", "apiVersion"} \
                        or field.get("fieldPath") not in fields:
                    raise Untranslatable(f"env {name}: valueFrom {json.dumps(source)} (only fieldRef "
                                         f"{' and '.join(sorted(fields))} are resolved here)")
                self.env[name] = fields[field["fieldPath"]]
            else:
                self.env[name] = str(variable.get("value", ""))

    def _volumes(self, mounts, volumes):
        by_name = {v["name"]: v for v in volumes}
        for mount in mounts:
            name = mount.get("name")
            known_fields(mount, {"name", "mountPath", "readOnly"}, f"the volumeMount {name}")
            volume = by_name.get(name)
            if volume is None:
                raise Untranslatable(f"the volumeMount {name}: no such volume in the pod")
            kinds = sorted(set(volume) - {"name"})
            if kinds != ["emptyDir"]:
                raise Untranslatable(f"the volume {name} is {', '.join(kinds) or 'of no kind'}: only "
                                     "emptyDir volumes translate (to tmpfs)")
            empty_dir = volume["emptyDir"] or {}
            known_fields(empty_dir, {"medium", "sizeLimit"}, f"the emptyDir {name}")
            options = ["ro" if mount.get("readOnly") else "rw", "exec", "nosuid", "nodev", "notmpcopyup",
                       "mode=1777"]
            if "sizeLimit" in empty_dir:
                options.append(f"size={int(quantity(empty_dir['sizeLimit'], f'the emptyDir {name}'))}")
            self.options += ["--tmpfs", f"{mount['mountPath']}:{','.join(options)}"]

    def _resources(self, resources):
        known_fields(resources, {"limits", "requests"}, "resources")
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        known_fields(limits, {"cpu", "memory"}, "resources.limits")
        known_fields(requests, {"cpu", "memory"}, "resources.requests")
        if "memory" in limits:
            memory = str(int(quantity(limits["memory"], "resources.limits.memory")))
            self.options += ["--memory", memory, "--memory-swap", memory]
        if "cpu" in limits:
            self.options += ["--cpus", f"{quantity(limits['cpu'], 'resources.limits.cpu'):g}"]
        # A kubelet turns the CPU request (else the limit) into cpu.shares, at least 2.
        cpu = requests.get("cpu", limits.get("cpu"))
        if cpu is not None:
            shares = max(2, int(quantity(cpu, "resources.requests.cpu") * 1024))
            self.options += ["--cpu-shares", str(shares)]

    def _probe(self, probe, what):
        known_fields(probe, PROBE_FIELDS, what)
        if "httpGet" not in probe:
            raise Untranslatable(f"{what}: only httpGet probes translate")
        get = probe["httpGet"]
        known_fields(get, {"path", "port", "scheme"}, f"{what}.httpGet")
        if get.get("scheme", "HTTP") != "HTTP":
            raise Untranslatable(f"{what}.httpGet.scheme: {get['scheme']}")
        port = get.get("port")
        if isinstance(port, str) and not port.isdigit():
            if port not in self.ports:
                raise Untranslatable(f"{what}: no container port named {port!r}")
            port = self.ports[port]
        return {**PROBE_DEFAULTS, **{k: v for k, v in probe.items() if k != "httpGet"},
                "path": get.get("path", "/"), "port": int(port)}


def probe_passes(probe):
    status = http_get(probe["port"], probe["path"], timeout=probe["timeoutSeconds"])[0]
    return status is not None and 200 <= status < 400


class LivenessMonitor(threading.Thread):
    """The livenessProbe as a kubelet runs it: from initialDelaySeconds on, every periodSeconds;
    `tripped` says when it failed failureThreshold times in a row (a kubelet would restart)."""

    def __init__(self, probe):
        super().__init__(daemon=True)
        self.probe, self.stopped, self.tripped, self.probes = probe, threading.Event(), None, 0

    def run(self):
        if self.stopped.wait(self.probe["initialDelaySeconds"]):
            return
        failures = 0
        while not self.stopped.is_set():
            self.probes += 1
            failures = 0 if probe_passes(self.probe) else failures + 1
            if failures >= self.probe["failureThreshold"] and self.tripped is None:
                self.tripped = f"{failures} failures in a row by {time.strftime('%H:%M:%S')}"
            if self.stopped.wait(self.probe["periodSeconds"]):
                return


class OperatorContainer:
    """The image started by podman as a kubelet starts the chart's pod (see PodmanPod), with
    in-cluster configuration from a real ServiceAccount token."""

    title = "the operator's container"
    ready_timeout = 120

    def __init__(self, pod, image, pod_name, service_account_dir, user):
        self.pod, self.identity, self.user = pod, pod_name, user
        self.name = f"siren-packaging-{os.getpid()}"
        self.command = [
            "podman", "run", "--detach", "--name", self.name, "--pull=never",
            "--network", "host", "--hostname", pod_name, "--http-proxy=false", "--pids-limit=-1",
            *pod.options,
            "--mount", f"type=bind,source={service_account_dir},destination={SERVICE_ACCOUNT_DIR},ro=true",
            *[f"--env={k}={v}" for k, v in sorted(pod.env.items())],
            image, *pod.args,
        ]
        self.liveness = LivenessMonitor(pod.liveness) if pod.liveness else None
        self.started = False
        self.since = ""

    def start(self):
        print("     " + " ".join(self.command), flush=True)
        self.since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        # The vfs storage driver copies the image's layers for every new container.
        started = run(self.command, timeout=600)
        if started.returncode:
            return f"podman run: {started.stderr.strip()}"
        self.started = True
        if self.liveness:
            self.liveness.start()
        return None

    def running(self):
        state = run(["podman", "inspect", "--format", "{{.State.Running}}", self.name])
        return state.stdout.strip() == "true"

    def ready(self):
        return probe_passes(self.pod.readiness)

    def get(self, path):
        return http_get(self.pod.ports.get("http", CHART_PORT), path)

    def logs(self):
        logs = run(["podman", "logs", self.name])
        return (logs.stdout + logs.stderr)[-3000:]

    def extra_checks(self, plane, namespace):
        # The API server's audit log names the user of every write to the Lease since the start.
        writes = []
        for line in plane.audit_log.read_text().splitlines() if plane.audit_log.exists() else []:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            ref = event.get("objectRef") or {}
            if (ref.get("resource"), ref.get("namespace"), ref.get("name")) == ("leases", namespace, "siren-operator") \
                    and event.get("verb") in ("create", "update", "patch") \
                    and event.get("requestReceivedTimestamp", "") >= self.since:
                writes.append(((event.get("user") or {}).get("username"),
                               (event.get("impersonatedUser") or {}).get("username")))
        check(f"{self.title} writes the Lease as {self.user} itself (its token, no impersonation)",
              bool(writes) and set(writes) == {(self.user, None)},
              f"(user, impersonated user) of the Lease writes since the start: {sorted(set(writes), key=str)}")
        if self.liveness:
            # A short job can end before the first probe is due; the probe must have run for the
            # check to say anything.
            due = time.time() + self.pod.liveness["initialDelaySeconds"] + self.pod.liveness["periodSeconds"] + 5
            while self.liveness.probes == 0 and time.time() < due:
                time.sleep(0.5)
            check(f"{self.title}'s livenessProbe never fails {self.pod.liveness['failureThreshold']} times in a row",
                  self.liveness.probes > 0 and self.liveness.tripped is None,
                  f"{self.liveness.tripped or 'never probed'}\n{self.logs()}")

    def stop(self):
        if self.liveness:
            self.liveness.stopped.set()
        try:
            if self.started and self.running():
                stopped = run(["podman", "stop", "--time", "15", self.name], timeout=60)
                code = run(["podman", "inspect", "--format", "{{.State.ExitCode}}", self.name]).stdout.strip()
                check(f"{self.title} exits 0 on SIGTERM within 15 s (PID 1 handles it)", code == "0",
                      f"exit code {code!r} {stopped.stderr.strip()}\n{self.logs()}")
        finally:
            run(["podman", "rm", "--force", self.name], timeout=120)


class RedisServer:
    """redis-server on a free loopback port, without persistence."""

    def __init__(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(directory), "--logfile", str(directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, "redis-server", timeout=10)
        except RuntimeError:
            self.stop()
            raise

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def port_free(port):
    """Whether the operator could bind 0.0.0.0:port (Rust's listeners set SO_REUSEADDR too)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        pass
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def service_account_token(plane, namespace, service_account):
    """A token of the ServiceAccount from the TokenRequest API, as a kubelet gets one; (token,
    problem)."""
    request = plane.dir / "token-request.json"
    request.write_text(json.dumps({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [TOKEN_AUDIENCE], "expirationSeconds": 3600}}))
    created = plane.kubectl("create", "--raw",
                            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
                            "-f", str(request))
    if created.returncode:
        return None, created.stderr.strip()
    try:
        return json.loads(created.stdout)["status"]["token"], None
    except (ValueError, KeyError) as error:
        return None, f"{error!r} in {created.stdout[:500]}"


def container_run(plane, namespace, service_account, deployment, image):
    """The image runs as the chart's rendered pod would under a kubelet (PodmanPod), with in-cluster
    configuration and nothing but the chart's RBAC, and runs a job on Fashion-MNIST with the
    process backend."""
    user = f"system:serviceaccount:{namespace}:{service_account}"
    missing = [tool for tool in ("podman", "redis-server") if not shutil.which(tool)]
    if not check("podman and redis-server for the container run (--operator-image)", not missing,
                 f"not on PATH: {', '.join(missing)}"):
        return
    app_version = load((CHART / "Chart.yaml").read_text())["appVersion"]
    chart_image = deployment["spec"]["template"]["spec"]["containers"][0].get("image")
    check(f"the chart's default image is siren-operator:{app_version}, for which {image} stands",
          chart_image == f"siren-operator:{app_version}", f"the Deployment's image is {chart_image!r}")
    inspected = run(["podman", "image", "inspect", "--format", "{{.Config.User}}", image])
    if not check(f"{image} is in podman's local storage", inspected.returncode == 0,
                 f"{inspected.stderr.strip()} (scripts/build-images.sh builds it)"):
        return
    image_user = inspected.stdout.strip()

    listed = plane.kubectl("get", "services", "-n", namespace, "-o", "json")
    services = json.loads(listed.stdout)["items"] if listed.returncode == 0 else []
    # A Deployment's pods are named <deployment>-<template hash>-<suffix>.
    pod_name = f"{deployment['metadata']['name']}-packaging-{os.getpid()}"
    try:
        pod = PodmanPod(deployment, namespace, pod_name, service_account,
                        service_link_env(services, plane.port))
    except Untranslatable as error:
        check("the chart's pod translates to podman run options", False, str(error))
        return
    check("the chart's pod translates to podman run options", True)
    if pod.run_as_non_root:
        effective = str(pod.uid) if pod.uid is not None else image_user.split(":")[0]
        check("runAsNonRoot: the container's user is not root", effective.isdigit() and effective != "0",
              f"user {effective!r} (a kubelet refuses root and non-numeric users)")
    check(f"{image}'s USER is the chart's runAsUser {pod.uid}", image_user.split(":")[0] == str(pod.uid),
          f"the image's user is {image_user!r}")
    http_port = pod.ports.get("http")
    check(f"the container port `http` is the operator's default probe port {CHART_PORT}",
          http_port == CHART_PORT and "SIREN_PROBE_ADDRESS" not in pod.env
          and not any(a.startswith("--probe-address") for a in pod.args),
          f"ports {pod.ports}, args {pod.args}, SIREN_PROBE_ADDRESS {pod.env.get('SIREN_PROBE_ADDRESS')!r}")
    if not check(f"127.0.0.1:{CHART_PORT} is free for the container on the host's network",
                 port_free(CHART_PORT),
                 f"something listens on port {CHART_PORT}; the chart's container always listens there and "
                 "shares the host's network here: stop it and run again"):
        return

    token, problem = service_account_token(plane, namespace, service_account)
    if not check(f"a TokenRequest for {user}", token is not None, problem or ""):
        return
    # The token is the ServiceAccount's own: the chart's RBAC, nothing more.
    allowed = plane.kubectl("--token", token, "auth", "can-i", "update", "leases.coordination.k8s.io",
                            "-n", namespace).stdout.strip()
    refused = plane.kubectl("--token", token, "auth", "can-i", "create", "pods", "-n", "default").stdout.strip()
    check(f"the token is {user}'s: it may update leases in {namespace} and may not create pods",
          (allowed, refused) == ("yes", "no"), f"update leases: {allowed!r}, create pods: {refused!r}")
    credentials = plane.dir / "serviceaccount"
    credentials.mkdir()
    os.chmod(credentials, 0o755)
    for name, text in (("token", token), ("ca.crt", (plane.dir / "certs/apiserver.crt").read_text()),
                       ("namespace", namespace)):
        (credentials / name).write_text(text)
        os.chmod(credentials / name, 0o644)

    try:
        redis = RedisServer(plane.dir / "redis")
    except RuntimeError as error:
        check("redis-server starts for the container's job", False, str(error))
        return
    try:
        operator = OperatorContainer(pod, image, pod_name, credentials, user)
        operator_run(plane, namespace, operator, image_job(redis.url))
    finally:
        redis.stop()


def cluster_checks(helm, kustomized):
    plane = ControlPlane(APISERVER)
    try:
        plane.kubectl("apply", "-f", "-", input=KNATIVE_SERVICE_CRD + "---" + SERVICE_MONITOR_CRD)
        plane.kubectl("wait", "--for=condition=established", "--timeout=30s",
                      "crd/services.serving.knative.dev", "crd/servicemonitors.monitoring.coreos.com")
        manifest = helm.install(plane.kubeconfig, "siren-system", "siren", CHART)
        check("helm install siren charts/siren -n siren-system (default values)", True)
        if UPDATE:
            write_generated(manifest)
            built = run([KUBECTL, "kustomize", str(OPERATOR_DIR)])
            check("kubectl kustomize config/operator", built.returncode == 0, built.stderr.strip())
            kustomized = docs(built.stdout) if built.returncode == 0 else []
        compare_with_kustomize(manifest, kustomized)
        rendered = {key(o): o for o in docs(manifest)}
        default_deployment = rendered[("Deployment", "siren-system", "siren")]
        container = default_deployment["spec"]["template"]["spec"]["containers"][0]
        check("the default Deployment passes --leader-election=true", "--leader-election=true" in container["args"])
        check("the default Deployment has no SIREN_WATCH_NAMESPACE",
              all(e["name"] != "SIREN_WATCH_NAMESPACE" for e in container["env"]))
        dry = plane.kubectl("apply", "--dry-run=server", "-k", str(OPERATOR_DIR))
        check("kubectl apply --dry-run=server -k config/operator", dry.returncode == 0, dry.stderr.strip())
        rbac_checks(plane, "system:serviceaccount:siren-system:siren", "siren-system", "default", None, True)

        # watchNamespace and every optional value.
        for namespace in ("team-a", "team-b"):
            plane.kubectl("create", "namespace", namespace)
        values = {
            "replicaCount": 2,
            "watchNamespace": "team-a",
            "backends": {"knative": False, "openfaas": False},
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "scheduler": {"policy": (ROOT / "config/scheduler/drl-policy.json").read_text()},
            "aws": {"region": "eu-west-1", "existingSecret": "siren-aws"},
            "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/siren"}},
            "rbac": {"aggregateToDefaultRoles": True},
            "imagePullSecrets": [{"name": "regcred"}],
            "podAnnotations": {"example.com/team": "ml"},
            "nodeSelector": {"kubernetes.io/arch": "amd64"},
            "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
            "extraEnv": [{"name": "SIREN_DATA_DIR", "value": "/data"}],
        }
        release = helm.install(plane.kubeconfig, "siren-ns", "siren-ns", CHART, values, release_info=True)
        manifest = release["manifest"]
        check("helm install with watchNamespace and every optional value", True)
        notes = (release.get("info") or {}).get("notes") or ""
        check("with 2 replicas NOTES.txt shows the lease's holder, not rollout status",
              "get lease siren-operator" in notes and "rollout status" not in notes, notes[-1500:])
        objects = docs(manifest)
        kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
        check("watchNamespace: no ClusterRole for jobs", ("ClusterRole", "siren-ns") not in kinds)
        roles = [o for o in objects if o["kind"] == "Role" and o["metadata"].get("namespace") == "team-a"]
        check("watchNamespace: a Role in the watched namespace", len(roles) == 1)
        for kind in ("ServiceMonitor", "ConfigMap"):
            check(f"optional {kind} rendered", any(o["kind"] == kind for o in objects))
        container = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        check("SIREN_WATCH_NAMESPACE=team-a", env.get("SIREN_WATCH_NAMESPACE", {}).get("value") == "team-a")
        check("AWS credentials by envFrom", container.get("envFrom") == [{"secretRef": {"name": "siren-aws"}}])
        check("aws.region is AWS_REGION", env.get("AWS_REGION", {}).get("value") == "eu-west-1")
        own = sorted(set(env) - {e["name"] for e in values["extraEnv"]})
        unread = [n for n in own if not n.startswith("AWS_") and not read_by_code(n)]
        check("the chart sets no environment variable the code does not read", not unread,
              f"{unread} appear in no Rust source as \"NAME\"")
        check("the scheduler policy is the state directory", env.get("SIREN_STATE_DIR", {}).get("value") == "/etc/siren/scheduler")
        rbac_checks(plane, "system:serviceaccount:siren-ns:siren-ns", "siren-ns", "team-a", "team-b", False)

        for name, wrong in (("a value of the wrong type", {"replicaCount": "two"}),
                            ("an unknown value", {"replicas": 2}),
                            ("a scheduler policy that is not JSON", {"scheduler": {"policy": "{not json"}}),
                            ("two replicas without leader election",
                             {"replicaCount": 2, "leaderElection": {"enabled": False}})):
            try:
                helm.install(plane.kubeconfig, "siren-wrong", "siren-wrong", CHART, wrong)
                check(f"helm install refuses {name}", False, "installed")
            except RuntimeError as error:
                check(f"helm install refuses {name}", True)
                print(f"     ({str(error).splitlines()[0][:160]})")

        if os.path.isfile(OPERATOR_BIN) and os.access(OPERATOR_BIN, os.X_OK):
            operator_run(plane, "siren-system", OperatorProcess(plane, "siren-system", "siren"), SMALL_JOB)
        else:
            missing = f"no operator binary at {OPERATOR_BIN} (cargo build --release --bin siren-operator)"
            if REQUIRE_OPERATOR:
                check("the operator run (--require-operator)", False, missing)
            else:
                print(f"skip the operator run: {missing}")
        if OPERATOR_IMAGE:
            container_run(plane, "siren-system", "siren", default_deployment, OPERATOR_IMAGE)
    finally:
        plane.stop()


def manifest_checks():
    """What a GitOps pipeline does: `kubectl apply -k config/operator` on a fresh API server, then
    the operator with nothing but the permissions those manifests grant."""
    plane = ControlPlane(APISERVER)
    try:
        applied = plane.kubectl("apply", "-k", str(OPERATOR_DIR))
        check("kubectl apply -k config/operator on a fresh API server", applied.returncode == 0,
              applied.stderr.strip())
        established = plane.kubectl("wait", "--for=condition=established", "--timeout=30s",
                                    "crd/trainingjobs.siren.dev")
        check("the manifests' CRD is established", established.returncode == 0, established.stderr.strip())
        operator_run(plane, "siren-system", OperatorProcess(plane, "siren-system", "siren"), SMALL_JOB)
    finally:
        plane.stop()


def main():
    helm = Helm(HELM_LIB) if HELM_LIB else None
    kustomized = static_checks(helm)
    if helm and APISERVER:
        cluster_checks(helm, kustomized)
    elif REQUIRE_OPERATOR or OPERATOR_IMAGE:
        check("the cluster checks and the operator run"
              + (" (--require-operator)" if REQUIRE_OPERATOR else " in a container (--operator-image)"), False,
              "no Helm library on this platform" if not helm else "no kube-apiserver")
    else:
        print("skip the cluster checks" + ("" if helm else ": no Helm library on this platform"))
    if APISERVER and os.path.isfile(OPERATOR_BIN) and os.access(OPERATOR_BIN, os.X_OK):
        manifest_checks()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


# A CI timeout ends this with SIGTERM; exiting through SystemExit runs the `finally` blocks that
# stop the operator's container (on the host's network, holding :8080) and the control plane.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
main()
PY
