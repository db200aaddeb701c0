{{/*
Hand-written helpers. The objects themselves are generated from the kustomize manifests by
scripts/gen-manifests.ts (every other template file says so in its first line).
*/}}

{{/* Labels Helm adds to every object, beside the kustomize labels the templates carry. */}}
{{- define "tzw.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/*
config.yaml: the kustomize base's (files/config.yaml), with auditApi.auth replaced by
.Values.auditApi.auth when set, then .Values.config merged over it (maps key by key, lists whole).
*/}}
{{- define "tzw.config" -}}
{{- $config := .Files.Get "files/config.yaml" | fromYaml -}}
{{- if .Values.auditApi.auth }}
{{- $_ := set $config.auditApi "auth" (deepCopy .Values.auditApi.auth) -}}
{{- end }}
{{- $config = mustMergeOverwrite $config (deepCopy .Values.config) -}}
{{- toYaml $config -}}
{{- end }}

{{- define "tzw.sqlitePersistent" -}}
{{- and (eq .Values.store.type "sqlite") .Values.store.sqlite.persistence.enabled -}}
{{- end }}

{{/*
PostgreSQL with the spool on a PersistentVolumeClaim per replica: the webhook runs as a StatefulSet
(as manifests/overlays/ha), so a replica's not-yet-forwarded decisions outlive its pod.
*/}}
{{- define "tzw.statefulSet" -}}
{{- and (eq .Values.store.type "postgres") .Values.store.postgres.spool.persistence.enabled -}}
{{- end }}

{{- define "tzw.tlsSecret" -}}
{{- if eq .Values.certificates.mode "existingSecret" -}}
{{- .Values.certificates.existingSecret.name -}}
{{- else -}}
tzw-webhook-tls
{{- end -}}
{{- end }}

{{/*
certificates.mode helm: a CA and a serving certificate for the Service's DNS names, generated once.
An existing Secret (an earlier install) is kept, so upgrades do not change the caBundle. Computed
once per render (memoised in .Values) because the Secret and both webhook configurations use it.
*/}}
{{- define "tzw.helmCerts" -}}
{{- if not (hasKey .Values "tzwGeneratedCerts") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace "tzw-webhook-tls" -}}
{{- if and $existing (hasKey ($existing.data | default dict) "ca.crt") -}}
{{- $_ := set .Values "tzwGeneratedCerts" (dict "ca" (index $existing.data "ca.crt") "crt" (index $existing.data "tls.crt") "key" (index $existing.data "tls.key")) -}}
{{- else -}}
{{- $service := "tekton-zscaler-webhook" -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $service (printf "%s.%s" $service $ns) (printf "%s.%s.svc" $service $ns) (printf "%s.%s.svc.cluster.local" $service $ns) -}}
{{- $ca := genCA "tekton-zscaler-webhook-ca" (int .Values.certificates.helm.validityDays) -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $service $ns) nil $names (int .Values.certificates.helm.validityDays) $ca -}}
{{- $_ := set .Values "tzwGeneratedCerts" (dict "ca" ($ca.Cert | b64enc) "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- toYaml .Values.tzwGeneratedCerts -}}
{{- end }}

{{/* The webhook configurations' caBundle: empty for certManager (cert-manager injects it). */}}
{{- define "tzw.caBundle" -}}
{{- if eq .Values.certificates.mode "helm" -}}
{{- (include "tzw.helmCerts" . | fromYaml).ca -}}
{{- else if eq .Values.certificates.mode "existingSecret" -}}
{{- .Values.certificates.existingSecret.caBundle -}}
{{- end -}}
{{- end }}

{{/* Value combinations that cannot work: refuse them with a clear message. */}}
{{- define "tzw.validate" -}}
{{- if and (eq (include "tzw.sqlitePersistent" .) "true") (gt (int .Values.replicaCount) 1) -}}
{{- fail "store.sqlite.persistence.enabled needs replicaCount: 1 (each replica would need its own database); use store.type: postgres for several replicas" -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "string" .Values.podDisruptionBudget.minAvailable)) (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) -}}
{{- fail "podDisruptionBudget.minAvailable must be below replicaCount, or no node could ever be drained" -}}
{{- end -}}
{{- end }}
