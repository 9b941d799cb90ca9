// Command etcd is etcd's own server entry point, built through a module of
// ours because etcd's go.mod has replace directives that `go install` refuses.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
