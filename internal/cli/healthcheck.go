package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/config"
)

func newHealthcheckCmd() *cobra.Command {
	var admin string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 when the mirror on this host is ready, 1 when not (for HEALTHCHECK and probes)",
		Long: `Probe the regcache serve of this host or container: GET /readyz on its admin
listener, reached on loopback. The admin address is the one serve would use,
read from the same --config file, REGCACHE_* and image defaults, so the
container image's HEALTHCHECK follows a REGCACHE_ADMIN_ADDR the user set;
--admin names it instead. With the admin listener off (admin_addr ""), it
checks that the registry listener accepts connections.

It prints the answer (a degraded store is still ready: hits are served) and
exits 0; it exits 1 when nothing answers, or with a status other than 200.`,
		Example: `  regcache healthcheck
  regcache healthcheck --admin 127.0.0.1:5001
  docker inspect --format '{{json .State.Health}}' through-cache`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addr, registry := admin, ""
			if !cmd.Flags().Changed("admin") {
				cfg, err := config.Load(cmd.Flags(), os.LookupEnv)
				if err != nil {
					return err
				}
				addr, registry = cfg.AdminAddr, cfg.Addr
			}
			if addr == "" {
				target := loopbackAddr(registry)
				conn, err := net.DialTimeout("tcp", target, timeout)
				if err != nil {
					return fmt.Errorf("not healthy: the admin listener is off and the registry listener at %s does not accept connections: %w", target, err)
				}
				conn.Close()
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "ok: the registry listener at %s accepts connections (the admin listener is off, so readiness is not known)\n", target)
				return err
			}
			url := "http://" + loopbackAddr(addr) + "/readyz"
			resp, err := (&http.Client{Timeout: timeout}).Get(url)
			if err != nil {
				return fmt.Errorf("not healthy: %w (is regcache serve running, with admin_addr %s?)", err, addr)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			msg := strings.TrimSpace(string(body))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("not ready: %s answered %s: %s", url, resp.Status, msg)
			}
			if msg == "" {
				return errors.New("not ready: " + url + " answered 200 with an empty body")
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), msg)
			return err
		},
	}
	cmd.Flags().StringVar(&admin, "admin", "", "admin listener to probe (default: the admin_addr serve uses, from --config, the environment and the defaults)")
	cmd.Flags().String("config", "", "configuration file, as for serve (env REGCACHE_CONFIG)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	return cmd
}

// loopbackAddr turns a listen address into one to dial on this host: an
// empty or unspecified host (":5001", "0.0.0.0:5001", "[::]:5001") becomes
// 127.0.0.1.
func loopbackAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
