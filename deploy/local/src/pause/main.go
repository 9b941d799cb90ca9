// Command pause is the pod sandbox of the local cluster's real node: the
// process that holds a pod's namespaces. It waits for SIGTERM or SIGINT and
// exits; it reaps nothing because it shares its PID namespace with no one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
