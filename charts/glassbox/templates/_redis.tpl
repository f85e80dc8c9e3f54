{{/* The explainer's Redis (explainer.redis): jobs, results and the explanation cache of every explainer pod. */}}

{{- define "glassbox.explainer.redis.fullname" -}}
{{- printf "%s-explainer-redis" (include "glassbox.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The chart runs the explainer's Redis itself (mode component, explainer.redis.deploy). */}}
{{- define "glassbox.explainer.redis.deployed" -}}
{{- if and (include "glassbox.explainer.component" .) .Values.explainer.redis.deploy }}true{{ end -}}
{{- end -}}

{{/* The GLASSBOX_EXPLAINER_REDIS_URL env entry of the explainer container; nothing without a Redis. */}}
{{- define "glassbox.explainer.redis.env" -}}
{{- $r := .Values.explainer.redis -}}
{{- if $r.deploy }}
- {name: GLASSBOX_EXPLAINER_REDIS_URL, value: {{ printf "redis://%s.%s.svc.cluster.local:6379/0" (include "glassbox.explainer.redis.fullname" .) .Release.Namespace | quote }}}
{{- else if $r.existingSecret }}
- name: GLASSBOX_EXPLAINER_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ $r.existingSecret | quote }}, key: {{ $r.existingSecretKey | quote }}}}
{{- else if $r.url }}
- {name: GLASSBOX_EXPLAINER_REDIS_URL, value: {{ $r.url | quote }}}
{{- end }}
{{- end -}}
