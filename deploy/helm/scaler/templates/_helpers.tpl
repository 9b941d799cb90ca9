{{/* The chart's name, overridable. */}}
{{- define "scaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object names: the release name, with the chart's name added unless it is already in it. */}}
{{- define "scaler.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "scaler.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "scaler.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "scaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "scaler.labels" -}}
{{ include "scaler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "scaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "scaler.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "scaler.leaseName" -}}
{{- default (include "scaler.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "scaler.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
What the daemon does to workloads, as RBAC rules. The verbs are exactly the
requests scaler/kube.py makes: informers list and watch, a 409 re-read gets,
pause and resume patch (replicas and annotations in one merge patch), every
action creates an Event (named after the action; a new leader lists
scaler's Events once to post those its predecessor owed), the end of a start
lists the workload's pods (when they became Ready), and a pause or resume of
an apps workload lists the namespace's KEDA ScaledObjects and patches the
one aimed at it. Namespace
labels (for namespace_selector) come from a cluster-wide namespace informer
(pass (dict "root" $ "cluster" true) for the ClusterRole), or, restricted to
a list, from a GET of each listed namespace (pass (dict "root" $ "namespace"
NAME) for that namespace's Role: a GET of namespace NAME is authorized in
namespace NAME).
*/}}
{{- define "scaler.workloadRules" -}}
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["serving.kserve.io"]
  resources: ["inferenceservices"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["jobset.x-k8s.io"]
  resources: ["jobsets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["ray.io"]
  resources: ["rayclusters", "rayjobs"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["kubeflow.org"]
  resources: ["notebooks"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["list", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
{{- range .root.Values.extraScalableResources }}
- apiGroups: [{{ required "extraScalableResources[].apiGroup is required" .apiGroup | quote }}]
  resources: {{ required "extraScalableResources[].resources is required" .resources | toJson }}
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- if .cluster }}
{{- include "scaler.crdRule" .root }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- else }}
- apiGroups: [""]
  resources: ["namespaces"]
  resourceNames: [{{ .namespace | quote }}]
  verbs: ["get"]
{{- end }}
{{- end -}}


{{- /* Reading the CRD of each extra scalable resource, to scale it where its
/scale subresource says (specReplicasPath): get, by name, nothing else. */}}
{{- define "scaler.crdNames" -}}
{{- $names := list }}
{{- range .Values.extraScalableResources }}
{{- $group := .apiGroup }}
{{- range .resources }}
{{- $names = append $names (printf "%s.%s" . $group) }}
{{- end }}
{{- end }}
{{- toJson $names }}
{{- end -}}

{{- define "scaler.crdRule" -}}
{{- if .Values.extraScalableResources }}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: {{ include "scaler.crdNames" . }}
  verbs: ["get"]
{{- end }}
{{- end -}}
