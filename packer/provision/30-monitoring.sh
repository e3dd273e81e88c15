#!/bin/bash
# Monitoring agent: Prometheus node exporter from Debian (port 9100; nftables allows it from the cluster's
# networks only).
set -euo pipefail
systemctl enable prometheus-node-exporter.service
# Prometheus (cloud image): not at boot; playbook-monitoring.yml enables and starts it on the monitoring server.
if systemctl cat prometheus.service >/dev/null 2>&1; then
  systemctl disable prometheus.service
  echo "30-monitoring: prometheus disabled (the monitoring playbook starts it where it runs)"
fi
echo "30-monitoring: prometheus-node-exporter enabled"
