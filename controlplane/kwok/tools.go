//go:build tools

// kwok, which gives the control plane nodes and moves pods through their phases.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
