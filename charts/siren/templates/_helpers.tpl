{{/* The chart's name, or nameOverride. */}}
{{- define "siren.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The name of the release's objects: fullnameOverride, else the release name when it already
contains the chart's name (release `siren` gives `siren`), else `<release>-<name>`.
*/}}
{{- define "siren.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "siren.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* `name-version` for the helm.sh/chart label. */}}
{{- define "siren.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* What selects the operator's pods; never changes across upgrades. */}}
{{- define "siren.selectorLabels" -}}
app.kubernetes.io/name: {{ include "siren.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object of the release. */}}
{{- define "siren.labels" -}}
helm.sh/chart: {{ include "siren.chart" . }}
{{ include "siren.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: siren
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The operator's ServiceAccount. */}}
{{- define "siren.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "siren.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator's image reference. */}}
{{- define "siren.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
What the operator does to TrainingJobs and the objects of their functions, in the namespaces it
watches: a ClusterRole's rules, or a Role's with watchNamespace.
*/}}
{{- define "siren.jobRules" -}}
# Watch jobs, add and remove the cleanup finalizer, delete jobs after ttlSecondsAfterFinished.
- apiGroups: ["siren.dev"]
  resources: ["trainingjobs"]
  verbs: ["get", "list", "watch", "patch", "update", "delete"]
# The job's status, written by server-side apply.
- apiGroups: ["siren.dev"]
  resources: ["trainingjobs/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["siren.dev"]
  resources: ["trainingjobs/finalizers"]
  verbs: ["update", "patch"]
# Events about jobs (Started, Scheduled, Resumed, the final reason).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# The Secrets a job names: its store's credentials (spec.store.credentialsSecret) and, for
# OpenFaaS, the gateway's basic-auth credentials. Read by name only: never listed or watched.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- if .Values.backends.knative }}
# Knative backend: one Service per job, scaled between epochs and deleted with the job.
- apiGroups: ["serving.knative.dev"]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Knative backend: each run's task key, in a Secret the Service's pods read
# (`<service>-task-key`, owned by the job), written by server-side apply and deleted when the run
# ends.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "patch", "delete"]
{{- end }}
{{- if .Values.kueue.enabled }}
# Kueue: a job labelled kueue.x-k8s.io/queue-name gets a Workload (owned by the job) that Kueue
# admits or evicts; the operator gives an evicted job's quota back and marks the Workload Finished.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["get", "create"]
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads/status"]
  verbs: ["get", "patch"]
{{- end }}
{{- end -}}
