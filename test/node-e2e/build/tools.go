//go:build tools

// Package tools names the commands this module builds so that `go mod
// tidy` keeps their dependencies (and their go.sum lines) in the module.
package tools

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/test/e2e_node"
	_ "k8s.io/kubernetes/test/images/agnhost"
)
