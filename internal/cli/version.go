package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version and commit are stamped at build time by the Makefile:
//
//	go build -ldflags "-X github.com/regcache/regcache/internal/cli.version=1.2.3 -X github.com/regcache/regcache/internal/cli.commit=abc1234"
//
// Unstamped, `go install …@v1.2.3` still gives the module version and a
// build with VCS stamping the revision (see init).
var (
	version = "dev"
	commit  = "unknown"
)

func init() {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if v := info.Main.Version; version == "dev" && v != "" && v != "(devel)" {
		version = v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && commit == "unknown" {
			commit = s.Value
		}
	}
}

// versionLine is what `regcache version` prints.
func versionLine() string {
	return fmt.Sprintf("regcache %s (commit %s, %s, %s/%s)", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print regcache's version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionLine())
			return err
		},
	}
}
