{{/* The name of the chart's objects. */}}
{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ferry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "ferry.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "ferry.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ferry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: ferry
{{- end -}}

{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ferry.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The namespace whose Applications ferry reconciles; empty: all namespaces. */}}
{{- define "ferry.watchNamespace" -}}
{{- if .Values.watchNamespace -}}
{{- .Values.watchNamespace -}}
{{- else if eq .Values.rbac.scope "namespaced" -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/*
"true" when ferry may write managed objects as itself: an Application may name no ServiceAccount
and no default applies. Otherwise every write goes through an impersonated ServiceAccount and
ferry's own rules on managed kinds are read-only (its watches).
*/}}
{{- define "ferry.actsAsItself" -}}
{{- if and (not .Values.requireServiceAccount) (not .Values.tenancy.defaultServiceAccount) -}}
true
{{- end -}}
{{- end -}}

{{/* What ferry needs for itself, wherever it reconciles Applications. */}}
{{- define "ferry.controllerRules" -}}
# ApplicationSets create and delete the Applications they generate.
- apiGroups: [ferry.dev]
  resources: [applications]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [ferry.dev]
  resources: [applicationsets]
  verbs: [get, list, watch, update, patch]
# Clusters: the remote clusters Applications deploy to (their kubeconfig Secrets are read
# with the Secret rule below, in the Cluster's namespace only).
- apiGroups: [ferry.dev]
  resources: [clusters]
  verbs: [get, list, watch]
# Notifiers (where to send what happened) and ImagePolicies (image update automation).
- apiGroups: [ferry.dev]
  resources: [notifiers, imagepolicies]
  verbs: [get, list, watch]
- apiGroups: [ferry.dev]
  resources: [applications/status, applicationsets/status, clusters/status, notifiers/status, imagepolicies/status]
  verbs: [get, update, patch]
- apiGroups: [ferry.dev]
  resources: [applications/finalizers, applicationsets/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Git credentials (spec.source.secretRef) and the webhook Secret.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
{{- if .Values.rbac.impersonate }}
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [impersonate]
{{- end }}
{{- end -}}

{{/*
What ferry may apply, prune and watch, wherever it manages objects: rbac.deployerRules as given
when ferry may act as itself, else the same rules read-only (ferry only watches them).
*/}}
{{- define "ferry.managedRules" -}}
{{- $writes := include "ferry.actsAsItself" . }}
{{- range .Values.rbac.deployerRules }}
{{- if $writes }}
{{ toYaml (list .) }}
{{- else }}
{{- $rule := deepCopy . }}
{{- $_ := set $rule "verbs" (list "get" "list" "watch") }}
{{ toYaml (list $rule) }}
{{- end }}
{{- end }}
# Hook Jobs and rollouts read what their workloads run.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get, list, watch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch{{ if $writes }}, create, update, patch, delete{{ end }}]
{{- end -}}
