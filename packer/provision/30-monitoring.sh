#!/bin/bash
# Monitoring agent: Prometheus node exporter from Debian (port 9100; nftables allows it from the cluster's
# networks only).
set -euo pipefail
systemctl enable prometheus-node-exporter.service
echo "30-monitoring: prometheus-node-exporter enabled"
