//go:build tools

// metrics-server, which serves the metrics API (metrics.k8s.io) from what kwok's nodes report.
package tools

import _ "sigs.k8s.io/metrics-server/cmd/metrics-server"
