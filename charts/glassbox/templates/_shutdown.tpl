{{/* How a pod stops (values `shutdown`): a preStop sleep while traffic is routed away, then SIGTERM, after
which each component is gone within graceSeconds; SIGKILL comes 2 s after that at the earliest. */}}
{{- define "glassbox.terminationGracePeriodSeconds" -}}
{{ add .Values.shutdown.preStopSeconds .Values.shutdown.graceSeconds 2 }}
{{- end -}}

{{/* The container's preStop hook (set here, Seldon's operator adds none of its own). */}}
{{- define "glassbox.preStop" -}}
lifecycle:
  preStop:
    exec:
      command: ["/bin/sh", "-c", "sleep {{ .Values.shutdown.preStopSeconds }}"]
{{- end -}}
