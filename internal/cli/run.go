package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Run executes the command line args and returns the process's exit
// code: 0, the code of an *ExitError (`status` uses 1 for degraded and 2
// for unreachable), else 1. The error goes to stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "regcache:", err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}
