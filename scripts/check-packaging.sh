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
#
# Helm is the Helm Go library bundled in PyPI's helm-sdkpy wheel (linux x86_64), driven through
# cffi: there is no helm binary in Debian or on the registries this project reaches.
#
# Usage: scripts/check-packaging.sh [--static] [--update] [--require-operator]
#   --static             only the static checks (no API server, no Helm install)
#   --update             copy crds/trainingjob.yaml to the chart and config/crd, rewrite
#                        config/operator's generated manifests from the chart's default render and
#                        docs/api-reference.md, then check
#   --require-operator   fail, instead of skipping the operator run, when there is no operator
#                        binary, no Helm library or no API server (scripts/test.sh, after cargo test)
# Environment: SIREN_OPERATOR_BIN (the operator binary for the run check; default:
# ${CARGO_TARGET_DIR:-~/.cache/siren/target}/release/siren-operator), SIREN_KUBE_APISERVER and
# SIREN_KUBECTL (default: the ones e2e/kube/build-apiserver.sh builds).
set -euo pipefail
cd "$(dirname "$0")/.."

static_only=false
update=false
require_operator=false
for arg in "$@"; do
  case "$arg" in
    --static) static_only=true ;;
    --update) update=true ;;
    --require-operator) require_operator=true ;;
    *) echo "usage: $0 [--static] [--update] [--require-operator]" >&2; exit 2 ;;
  esac
done
if $static_only && $require_operator; then
  echo "$0: --static skips the operator run that --require-operator requires" >&2
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
apiserver=""
if ! $static_only && [ -n "$helm_lib" ]; then
  apiserver="$SIREN_KUBE_APISERVER"
fi
export SIREN_KUBECTL

operator_bin="${SIREN_OPERATOR_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/siren/target}/release/siren-operator}"

exec python3 - "$helm_lib" "$apiserver" "$operator_bin" "$update" "$require_operator" <<'PY'
"""The checks themselves; see the header of scripts/check-packaging.sh."""
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
import time
import urllib.request
from pathlib import Path

import jsonschema
import yaml

HELM_LIB, APISERVER, OPERATOR_BIN = sys.argv[1], sys.argv[2], sys.argv[3]
KUBECTL = os.environ["SIREN_KUBECTL"]
UPDATE, REQUIRE_OPERATOR = sys.argv[4] == "true", sys.argv[5] == "true"
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
        key = self.dir / "service-accounts.key"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        self._wait_for(etcd_port, "etcd")
        self._spawn([apiserver, f"--etcd-servers={client}",
                     "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                     f"--secure-port={port}", "--insecure-port=0",
                     f"--cert-dir={self.dir / 'certs'}", f"--token-auth-file={self.dir / 'tokens.csv'}",
                     "--authorization-mode=RBAC",
                     f"--service-account-key-file={key}", f"--service-account-signing-key-file={key}",
                     "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                     "--service-cluster-ip-range=10.96.0.0/16",
                     "--endpoint-reconciler-type=none", "--enable-priority-and-fairness=false"],
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

    def _wait_for(self, port, what):
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{what} does not listen on {port}")

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

# A job small enough to finish in seconds on the operator's own threads.
SMALL_JOB = """
apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata: {name: packaging-check}
spec:
  model: {kind: logistic}
  dataset: {synthetic: {samples: 2000, features: 8, classes: 3, testSamples: 200}, shardSize: 500}
  training: {maxEpochs: 2}
  scheduler: {functions: 2, memoryMb: 1769}
"""


def operator_run(plane, namespace, service_account):
    """The real operator, with nothing but the chart's permissions, runs a job to Succeeded."""
    user = f"system:serviceaccount:{namespace}:{service_account}"
    kubeconfig = plane.kubeconfig_as(user)
    port = free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": namespace,
           "POD_NAME": "siren-packaging-check", "SIREN_LOG": "info",
           "SIREN_STATE_DIR": str(plane.dir / "state")}
    env.pop("SIREN_WATCH_NAMESPACE", None)
    log_path = plane.dir / "operator.log"
    with open(log_path, "w") as log:
        operator = subprocess.Popen([OPERATOR_BIN, "--leader-election=true", f"--probe-address=127.0.0.1:{port}"],
                                    env=env, stdout=log, stderr=log)
    try:
        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                    return response.status, response.read().decode()
            except OSError:
                return None, ""

        deadline = time.time() + 60
        while get("/readyz")[0] != 200 and time.time() < deadline and operator.poll() is None:
            time.sleep(0.5)
        if not check("the operator leads and is ready with the chart's permissions", get("/readyz")[0] == 200,
                     log_path.read_text()[-2000:]):
            return
        applied = plane.kubectl("apply", "-n", "default", "-f", "-", input=SMALL_JOB)
        check("kubectl apply of a small TrainingJob", applied.returncode == 0, applied.stderr)
        phase, deadline = "", time.time() + 180
        while time.time() < deadline and phase not in ("Succeeded", "Failed"):
            time.sleep(1)
            phase = plane.kubectl("get", "tj", "packaging-check", "-n", "default",
                                  "-o", "jsonpath={.status.phase}").stdout
        check("the operator runs the job to Succeeded", phase == "Succeeded",
              f"phase {phase!r}\n" + plane.kubectl("get", "tj", "packaging-check", "-n", "default", "-o", "yaml").stdout[-2000:]
              + log_path.read_text()[-2000:])
        events = plane.kubectl("get", "events.events.k8s.io", "-n", "default", "-o", "jsonpath={.items[*].reason}").stdout
        check("the operator records events", "Started" in events and "Scheduled" in events, events)
        lease = plane.kubectl("get", "lease", "siren-operator", "-n", namespace, "-o",
                              "jsonpath={.spec.holderIdentity}").stdout
        check(f"the operator holds the Lease siren-operator in {namespace}", lease == "siren-packaging-check", lease)
        metrics = get("/metrics")[1]
        check("/metrics counts the job's epochs", 'siren_epochs_finished_total{namespace="default",name="packaging-check"} 2' in metrics,
              metrics[-1500:])
        plane.kubectl("delete", "tj", "packaging-check", "-n", "default", "--wait=false")
        gone, deadline = False, time.time() + 60
        while not gone and time.time() < deadline:
            time.sleep(1)
            gone = "NotFound" in plane.kubectl("get", "tj", "packaging-check", "-n", "default").stderr
        check("the operator removes its finalizer when the job is deleted", gone)
    finally:
        operator.send_signal(signal.SIGTERM)
        try:
            operator.wait(timeout=15)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()


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
        deployment = rendered[("Deployment", "siren-system", "siren")]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
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
            operator_run(plane, "siren-system", "siren")
        else:
            missing = f"no operator binary at {OPERATOR_BIN} (cargo build --release --bin siren-operator)"
            if REQUIRE_OPERATOR:
                check("the operator run (--require-operator)", False, missing)
            else:
                print(f"skip the operator run: {missing}")
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
        operator_run(plane, "siren-system", "siren")
    finally:
        plane.stop()


def main():
    helm = Helm(HELM_LIB) if HELM_LIB else None
    kustomized = static_checks(helm)
    if helm and APISERVER:
        cluster_checks(helm, kustomized)
    elif REQUIRE_OPERATOR:
        check("the cluster checks and the operator run (--require-operator)", False,
              "no Helm library on this platform" if not helm else "no kube-apiserver")
    else:
        print("skip the cluster checks" + ("" if helm else ": no Helm library on this platform"))
    if APISERVER and os.path.isfile(OPERATOR_BIN) and os.access(OPERATOR_BIN, os.X_OK):
        manifest_checks()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


main()
PY
