package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/admin"
)

// Exit codes of `regcache status`, for monitoring.
const (
	exitHealthy     = 0
	exitDegraded    = 1 // see status's Long: anything in /status's degraded
	exitUnreachable = 2 // the admin listener did not answer
)

// ExitError is an error that asks for a process exit code other than 1.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func newStatusCmd() *cobra.Command {
	var admin string
	var asJSON, watch bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running mirror's health, savings, rate-limit headroom and fills",
		Long: `Ask a running regcache's admin listener for its state: the hit ratio (by
requests and by bytes), the pulls saved (clients' manifest GETs the
upstream would have counted and did not, net of the mirror's own),
bytes from cache against bytes fetched upstream, each upstream's state
(up, rate-limited, breaker-open, stale-serving, credentials-rejected) with the reason, since when and the next probe, its
rate-limit headroom with the time to the window's reset, the fills running
and the cache's use against its cap.

--admin takes host:port or a URL (http://127.0.0.1:5001).

Exit codes: 0 healthy, 1 degraded (upstream credentials rejected, an
upstream stale-serving, a breaker open or a 429 holding requests back,
the cache disk full or its cap unreachable, nothing cached while an
upstream is down, or the cache not writable), 2 the mirror did not
answer.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base, err := adminURL(admin)
			if err != nil {
				return err
			}
			if !watch {
				return statusOnce(cmd.Context(), cmd.OutOrStdout(), base, asJSON)
			}
			for {
				var buf strings.Builder
				err := statusOnce(cmd.Context(), &buf, base, asJSON)
				if err != nil {
					fmt.Fprintf(&buf, "\n%v\n", err)
				}
				// Home, clear, then the new screen in one write: no flicker.
				fmt.Fprintf(cmd.OutOrStdout(), "\x1b[H\x1b[2J%s\n(every %s; Ctrl-C to stop)\n", buf.String(), every)
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(every):
				}
			}
		},
	}
	def := os.Getenv("REGCACHE_ADMIN_ADDR")
	if def == "" {
		def = "127.0.0.1:5001"
	}
	cmd.Flags().StringVar(&admin, "admin", def, "admin listener of the mirror, host:port or URL (env REGCACHE_ADMIN_ADDR)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "refresh in place until interrupted")
	cmd.Flags().DurationVar(&every, "interval", 2*time.Second, "refresh interval of --watch")
	return cmd
}

// statusOnce asks for /status, prints it, and returns an *ExitError for
// a degraded or unreachable mirror.
func statusOnce(ctx context.Context, w io.Writer, base *url.URL, asJSON bool) error {
	where := base.Redacted()
	st, body, err := fetchStatus(ctx, base)
	if err != nil {
		return &ExitError{Code: exitUnreachable, Err: fmt.Errorf("ask the mirror's admin listener at %s: %w (is regcache serve running, and does --admin match its admin_addr?)", where, err)}
	}
	if asJSON {
		if _, err := w.Write(body); err != nil {
			return err
		}
	} else if err := printStatus(w, st); err != nil {
		return err
	}
	if st.State == "degraded" {
		return &ExitError{Code: exitDegraded, Err: fmt.Errorf("the mirror at %s is degraded: %s", where, strings.Join(st.Degraded, "; "))}
	}
	return nil
}

func fetchStatus(ctx context.Context, base *url.URL) (admin.Status, []byte, error) {
	var st admin.Status
	u := *base
	u.Path += "/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return st, nil, err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return st, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return st, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return st, nil, fmt.Errorf("GET /status answered %s", resp.Status)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, nil, fmt.Errorf("decode /status: %w", err)
	}
	return st, body, nil
}

func printStatus(w io.Writer, st admin.Status) error {
	r := st.Requests
	state := st.State
	if state == "" {
		state = "unknown"
	}
	fmt.Fprintf(w, "mirror       %s", state)
	if !st.Started.IsZero() && !st.Time.IsZero() {
		fmt.Fprintf(w, " (up %s)", st.Time.Sub(st.Started).Round(time.Second))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "hit ratio    %s of requests, %s of bytes (%d hits, %d stale, %d misses, %d coalesced; %d denied, %d errors)\n",
		ratio(r.HitRatio), ratio(r.ByteHitRatio), r.ByResult["hit"], r.ByResult["stale"], r.ByResult["miss"], r.ByResult["coalesced"],
		r.ByResult["denied"], r.ByResult["error"])
	fmt.Fprintf(w, "pulls saved  %d (clients' manifest GETs not counted upstream, net of the mirror's)\n", r.PullsSaved)
	fmt.Fprintf(w, "bytes        %s from cache, %s fetched upstream\n", humanBytes(r.BytesFromCache), humanBytes(r.BytesFetched))
	if st.Cache.MaxBytes > 0 {
		fmt.Fprintf(w, "cache        %s of %s (%.0f%%)\n", humanBytes(st.Cache.Bytes), humanBytes(st.Cache.MaxBytes), 100*float64(st.Cache.Bytes)/float64(st.Cache.MaxBytes))
	} else {
		fmt.Fprintf(w, "cache        %s (no cap)\n", humanBytes(st.Cache.Bytes))
	}
	fmt.Fprintf(w, "fills        %d running, %d committed, %d failed\n", st.ActiveFills, r.FillsCommitted, r.FillsFailed)
	if f := st.Fleet; f != nil {
		fmt.Fprintf(w, "nodes        %d in the last hour, %d in the last day, %d gone quiet", f.LastHour, f.LastDay, f.QuietCount)
		if e := f.Expected; e != nil {
			fmt.Fprintf(w, ", %d of %d expected never seen", e.NeverSeenCount, e.Addresses)
		}
		fmt.Fprintln(w)
	}
	if c := st.Cluster; c != nil {
		trust := "from Redis"
		if !c.Trusted {
			trust = "the last set read: Redis cannot be reached"
		}
		fmt.Fprintf(w, "cluster      %s, %d live replicas (%s), %d leases held\n", c.Self, len(c.Live), trust, c.Leases)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UPSTREAM\tSTATE\tRATE LIMIT\tREMAINING\tRESET\tSOURCE\tSAVED\tURL")
	for _, u := range st.Upstreams {
		limit, remaining, reset, src := "-", "-", "-", "-"
		if !u.RateLimit.Updated.IsZero() {
			limit = fmt.Sprintf("%d/%ss", u.RateLimit.Limit, u.RateLimit.Window)
			remaining = fmt.Sprint(u.RateLimit.Remaining)
			if u.Reserve > 0 && u.RateLimit.Remaining <= u.Reserve {
				remaining += " (under reserve " + fmt.Sprint(u.Reserve) + ")"
			}
		}
		if !u.Reset.IsZero() {
			reset = "in " + u.Reset.Sub(st.Time).Round(time.Second).String()
			if u.RateLimit.ResetEstimated && !u.Reset.Equal(u.Health.LimitedUntil) {
				reset += " (est.)"
			}
		}
		if u.RateLimit.Source != "" {
			src = u.RateLimit.Source
		}
		state := u.StateText
		if state == "" {
			state = "up"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", u.Name, state, limit, remaining, reset, src, u.PullsSaved, u.URL)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, u := range st.Upstreams {
		if u.Reason != "" || !u.NextProbe.IsZero() {
			line := u.Name + ": " + u.State
			if u.Reason != "" {
				line += ", reason: " + u.Reason
			}
			if !u.Since.IsZero() {
				line += ", since " + u.Since.Format(time.RFC3339)
			}
			if !u.NextProbe.IsZero() {
				line += ", next probe " + u.NextProbe.Format(time.RFC3339)
			}
			fmt.Fprintln(w, line)
		}
		if n := u.Health.Waiting; n > 0 {
			fmt.Fprintf(w, "%s: %d requests waiting for a connection (max_connections %s)\n", u.Name, n, st.Settings["upstreams["+strconv.Itoa(upstreamIndex(st, u.Name))+"].max_connections"])
		}
		for _, b := range u.Health.Breakers {
			if b.Open {
				fmt.Fprintf(w, "%s: %s breaker open since %s (last error: %s); the first request after %s probes it\n",
					u.Name, b.Scope, b.Since.Format(time.RFC3339), b.LastError, b.NextProbe.Format(time.RFC3339))
			}
		}
	}
	if len(st.Fills) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FILL\tUPSTREAM\tPROGRESS\tRATE\tREADERS")
		for _, f := range st.Fills {
			prog := humanBytes(f.Written)
			if f.Size > 0 {
				prog += fmt.Sprintf(" of %s (%.0f%%)", humanBytes(f.Size), 100*float64(f.Written)/float64(f.Size))
			}
			d := f.Digest
			if len(d) > 19 {
				d = d[:19] + "…"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s/s\t%d\n", d, f.Upstream, prog, humanBytes(int64(f.Rate)), f.Readers)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(st.Degraded) > 0 {
		fmt.Fprintln(w, "\ndegraded:")
		for _, d := range st.Degraded {
			fmt.Fprintln(w, "- "+d)
		}
	}
	return nil
}

func ratio(r float64) string {
	if r < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*r)
}

// upstreamIndex is the place of the upstream named name in st.
func upstreamIndex(st admin.Status, name string) int {
	for i, u := range st.Upstreams {
		if u.Name == name {
			return i
		}
	}
	return 0
}
