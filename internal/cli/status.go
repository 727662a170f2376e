package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/app"
)

func newStatusCmd() *cobra.Command {
	var admin string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running mirror's upstreams: rate limits, health, fills",
		Long: `Ask a running regcache's admin listener for its state: each upstream's last
reported Docker Hub rate limit (ratelimit-limit, ratelimit-remaining,
docker-ratelimit-source), whether the circuit breaker holds it down or a 429
keeps it from being asked, the tokens fetched, and the fills running.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, "http://"+admin+"/status", nil)
			if err != nil {
				return err
			}
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				return fmt.Errorf("ask the mirror's admin listener at %s: %w (is regcache serve running, and does --admin match its admin_addr?)", admin, err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("admin listener at %s answered %d: %v", admin, resp.StatusCode, err)
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			var st app.Status
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("decode status: %w", err)
			}
			return printStatus(cmd.OutOrStdout(), st)
		},
	}
	def := os.Getenv("REGCACHE_ADMIN_ADDR")
	if def == "" {
		def = "127.0.0.1:5001"
	}
	cmd.Flags().StringVar(&admin, "admin", def, "admin listener of the mirror (env REGCACHE_ADMIN_ADDR)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the raw JSON")
	return cmd
}

func printStatus(w io.Writer, st app.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UPSTREAM\tURL\tRATE LIMIT\tREMAINING\tSOURCE\tSTATE\tTOKENS")
	for _, u := range st.Upstreams {
		limit, remaining, state, src := "-", "-", "up", "-"
		if !u.RateLimit.Updated.IsZero() {
			limit = fmt.Sprintf("%d/%ss", u.RateLimit.Limit, u.RateLimit.Window)
			remaining = fmt.Sprint(u.RateLimit.Remaining)
		}
		if u.RateLimit.Source != "" {
			src = u.RateLimit.Source
		}
		switch {
		case u.Health.Down:
			state = "down (serving from cache)"
		case !u.Health.LimitedUntil.IsZero():
			state = "rate-limited until " + u.Health.LimitedUntil.Format(time.RFC3339)
			var kinds []string
			for _, l := range u.Health.Limited {
				kinds = append(kinds, l.Kind)
			}
			if len(kinds) > 0 {
				state += " for " + strings.Join(kinds, ", ")
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", u.Name, u.URL, limit, remaining, src, state, u.TokenRequests)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, u := range st.Upstreams {
		for _, b := range u.Health.Breakers {
			if b.Open {
				fmt.Fprintf(w, "%s: %s breaker open since %s (last error: %s); the first request after %s probes it\n",
					u.Name, b.Scope, b.Since.Format(time.RFC3339), b.LastError, b.NextProbe.Format(time.RFC3339))
			}
		}
	}
	_, err := fmt.Fprintf(w, "fills running: %d\n", st.ActiveFills)
	return err
}
