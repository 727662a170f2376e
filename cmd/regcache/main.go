// Command regcache is a pull-through caching mirror for Docker Hub and other
// OCI registries, and the tool that points container engines at it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/regcache/regcache/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.NewRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "regcache:", err)
		os.Exit(1)
	}
}
