{{/* Names and labels shared by the templates. */}}

{{- define "rekor-raft.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The headless Service: stable DNS names <pod>.<headless>.<namespace>.svc for the peers. */}}
{{- define "rekor-raft.headless" -}}
{{- printf "%s-internal" (include "rekor-raft.fullname" .) -}}
{{- end -}}

{{- define "rekor-raft.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rekor-raft.labels" -}}
{{ include "rekor-raft.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Pod N of the StatefulSet is node N+1 (Raft ids start at 1). Its stable host name: */}}
{{- define "rekor-raft.podHost" -}}
{{- $ := index . 0 -}}
{{- printf "%s-%d.%s.%s.svc" (include "rekor-raft.fullname" $) (index . 1) (include "rekor-raft.headless" $) $.Release.Namespace -}}
{{- end -}}

{{/* The voters of `rekor-node init`: ID=INTERNAL_ADDR,PUBLIC_ADDR for ids 1..replicas. */}}
{{- define "rekor-raft.initMembers" -}}
{{- $members := list -}}
{{- range $ordinal := until (int .Values.replicas) -}}
{{- $host := include "rekor-raft.podHost" (list $ $ordinal) -}}
{{- $members = append $members (printf "%d=%s:3001,%s:3000" (add1 $ordinal) $host $host) -}}
{{- end -}}
{{- join " " $members -}}
{{- end -}}

{{/* HTTP or HTTPS on the public port, for probes and the ServiceMonitor. */}}
{{- define "rekor-raft.publicScheme" -}}
{{- if .Values.tls.public.enabled }}HTTPS{{ else }}HTTP{{ end -}}
{{- end -}}
