{{/* Names ------------------------------------------------------------------------------------ */}}
{{- define "contract-sync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "contract-sync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<component>", for a dict {root, component}. */}}
{{- define "contract-sync.componentName" -}}
{{- printf "%s-%s" (include "contract-sync.fullname" .root | trunc 52 | trimSuffix "-") .component }}
{{- end }}

{{- define "contract-sync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "contract-sync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels ----------------------------------------------------------------------------------- */}}
{{- define "contract-sync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "contract-sync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "contract-sync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "contract-sync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: contract-sync
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* For a dict {root, component}. */}}
{{- define "contract-sync.componentSelectorLabels" -}}
{{ include "contract-sync.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "contract-sync.componentLabels" -}}
{{ include "contract-sync.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Image ------------------------------------------------------------------------------------ */}}
{{- define "contract-sync.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The database role of a component ({root, component}): its database.users entry (user,
     passwordSecret falling back to database.passwordSecret.name); empty for components without one. */}}
{{- define "contract-sync.databaseUser" -}}
{{- $users := .root.Values.database.users }}
{{- if hasKey $users .component }}{{ toYaml (index $users .component) }}{{ end }}
{{- end }}

{{/* Database URL built from its parts for a component's role (never with a password: that is PGPASSWORD). */}}
{{- define "contract-sync.databaseUrl" -}}
{{- $db := .root.Values.database }}
{{- $user := (include "contract-sync.databaseUser" . | fromYaml).user | default $db.user }}
{{- printf "postgresql+psycopg://%s@%s:%v/%s?sslmode=%s" (urlquery $user) $db.host $db.port $db.name $db.sslmode }}
{{- end }}

{{/* Environment of one process ({root, component}): Kafka as the component's own principal
     (kafka.sasl.users; none for the migrate Job), PostgreSQL as its own role (database.users; components without a role, the
     mapper and the topics Job, get no database settings at all), logging, health. Secrets only by
     reference. */}}
{{- define "contract-sync.env" -}}
{{- $root := .root }}
{{- $component := .component }}
{{- if ne $component "migrate" }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ $root.Values.kafka.bootstrapServers | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ $root.Values.kafka.securityProtocol | quote }}
- name: KAFKA_CLIENT_ID
  value: {{ $root.Values.kafka.clientId | quote }}
{{- with $root.Values.kafkaTopics.replicas }}
- name: KAFKA_TOPIC_REPLICATION_FACTOR
  value: {{ . | quote }}
{{- end }}
{{- with (index $root.Values.kafkaTopics.config "min.insync.replicas") }}
- name: KAFKA_TOPIC_MIN_INSYNC_REPLICAS
  value: {{ . | toString | quote }}
{{- end }}
{{- if hasPrefix "SASL" $root.Values.kafka.securityProtocol }}
{{- $sasl := $root.Values.kafka.sasl }}
{{- $own := index $sasl.users $component | default dict }}
- name: KAFKA_SASL_MECHANISM
  value: {{ required "kafka.sasl.mechanism is required when kafka.securityProtocol is SASL_* (no default)" $sasl.mechanism | quote }}
{{- $secret := $own.existingSecret | default $sasl.existingSecret }}
{{- if $own.username }}
- name: KAFKA_SASL_USERNAME
  value: {{ $own.username | quote }}
{{- else if $sasl.usernameKey }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.existingSecret is required with kafka.sasl.usernameKey" $secret | quote }}
      key: {{ $sasl.usernameKey | quote }}
{{- else if $sasl.username }}
- name: KAFKA_SASL_USERNAME
  value: {{ $sasl.username | quote }}
{{- end }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.existingSecret (or kafka.sasl.users.<component>.existingSecret) is required when kafka.securityProtocol is SASL_*" $secret | quote }}
      key: {{ $own.passwordKey | default $sasl.passwordKey | quote }}
{{- end }}
{{- if $root.Values.kafka.tls.caSecret }}
- name: KAFKA_SSL_CAFILE
  value: "/etc/contract-sync/kafka-ca/{{ $root.Values.kafka.tls.caKey }}"
{{- end }}
{{- end }}
{{- $dbUser := include "contract-sync.databaseUser" . | fromYaml }}
{{- if $dbUser }}
{{- with $root.Values.database }}
{{- if .urlSecret.name }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .urlSecret.name | quote }}
      key: {{ $dbUser.urlKey | default .urlSecret.key | quote }}
{{- else }}
- name: DATABASE_URL
  value: {{ include "contract-sync.databaseUrl" (dict "root" $root "component" $component) | quote }}
{{- $passwordSecret := $dbUser.passwordSecret | default dict }}
{{- $passwordSecretName := $passwordSecret.name | default .passwordSecret.name }}
{{- if $passwordSecretName }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $passwordSecretName | quote }}
      key: {{ $passwordSecret.key | default .passwordSecret.key | quote }}
{{- end }}
{{- end }}
- name: PGSSLMODE
  value: {{ .sslmode | quote }}
{{- if .sslRootCertSecret.name }}
- name: PGSSLROOTCERT
  value: "/etc/contract-sync/postgres-ca/{{ .sslRootCertSecret.key }}"
{{- else if has .sslmode (list "verify-ca" "verify-full") }}
{{- fail (printf "database.sslmode %s needs database.sslRootCertSecret.name (the Secret with the CA that signed the server's certificate)" .sslmode) }}
{{- end }}
{{- end }}
{{- end }}
- name: LOG_LEVEL
  value: {{ $root.Values.logging.level | quote }}
- name: LOG_FORMAT
  value: {{ $root.Values.logging.format | quote }}
- name: HEALTH_PORT
  value: {{ $root.Values.health.port | quote }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes for the CA bundles (Secrets mounted read-only) and writable scratch space. */}}
{{- define "contract-sync.volumes" -}}
- name: tmp
  emptyDir: {}
- name: data
  emptyDir: {}
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret | quote }}
    items:
      - key: {{ .Values.kafka.tls.caKey | quote }}
        path: {{ .Values.kafka.tls.caKey | quote }}
{{- end }}
{{- if .Values.database.sslRootCertSecret.name }}
- name: postgres-ca
  secret:
    secretName: {{ .Values.database.sslRootCertSecret.name | quote }}
    items:
      - key: {{ .Values.database.sslRootCertSecret.key | quote }}
        path: {{ .Values.database.sslRootCertSecret.key | quote }}
{{- end }}
{{- end }}

{{- define "contract-sync.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /var/lib/contract-sync
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/contract-sync/kafka-ca
  readOnly: true
{{- end }}
{{- if .Values.database.sslRootCertSecret.name }}
- name: postgres-ca
  mountPath: /etc/contract-sync/postgres-ca
  readOnly: true
{{- end }}
{{- end }}

{{/* Liveness and readiness probes on the health port. */}}
{{- define "contract-sync.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  {{- toYaml .Values.probes.readiness | nindent 2 }}
{{- end }}

{{/* Plain env entries from a component's `env` map. */}}
{{- define "contract-sync.componentEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name | quote }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* Pod fields every workload shares. */}}
{{- define "contract-sync.podCommon" -}}
serviceAccountName: {{ include "contract-sync.serviceAccountName" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* Partitions of the source topic psa.agreements.v1: the kafkaTopics.partitions override or the
     registry's (files/topics.yaml). The mapper's changelog must have the same count. */}}
{{- define "contract-sync.partitions" -}}
{{- $partitions := 0 }}
{{- range (.Files.Get "files/topics.yaml" | fromYaml).topics }}
{{- if eq .name "psa.agreements.v1" }}{{ $partitions = .partitions }}{{ end }}
{{- end }}
{{- default $partitions .Values.kafkaTopics.partitions }}
{{- end }}

{{/* The ConfigMap holding tenants.toml (the chart's own, or tenants.existingConfigMap). */}}
{{- define "contract-sync.tenantsConfigMap" -}}
{{- default (include "contract-sync.componentName" (dict "root" . "component" "tenants")) .Values.tenants.existingConfigMap -}}
{{- end }}
