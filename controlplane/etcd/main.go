// etcd, built from its server module (whose own main lives in a module that replaces its
// siblings with local paths, so `go install` cannot build it).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
