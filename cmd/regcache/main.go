// Command regcache is a pull-through caching mirror for Docker Hub and other
// OCI registries, and the tool that points container engines at it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/regcache/regcache/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
