// Command kubelet is the upstream kubelet, built from the Go module proxy the
// same way as the kube binary (same module versions, same Go build cache), for
// the local cluster's one real node (deploy/local/up --real-node).
//
// It is a module of its own rather than a fifth component of kube: the control
// plane binary stays as it is for everyone who never starts a real node, and
// the packages the two share are compiled once in the Go build cache.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
