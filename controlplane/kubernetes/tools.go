//go:build tools

// The Kubernetes components, built from k8s.io/kubernetes: its go.mod replaces every staging
// module with a local path, so this module requires it and pins each one to its release.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
