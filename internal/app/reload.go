package app

import (
	"errors"
	"fmt"
	"slices"

	"github.com/regcache/regcache/internal/config"
)

// Reload applies what of next can change while the mirror runs (SIGHUP):
// the TLS pair, the access rules (allow-list, trusted proxies, private
// policy, htpasswd, user patterns), storage.max_size, and the upstream
// credentials kept in password files (cached tokens are dropped so the
// next request logs in with the file as it is now). Each part is applied
// or kept whole: a part that fails keeps its old state and its error is
// returned with the others. Reloaded names what was applied; restart names
// the changed settings a reload cannot apply. The log level is the
// caller's (it owns the logger).
func (a *App) Reload(next config.Config) (reloaded, restart []string, err error) {
	var errs []error
	if a.certs != nil && next.TLS.Cert == a.cfg.TLS.Cert && next.TLS.Key == a.cfg.TLS.Key {
		if err := a.certs.reload(); err != nil {
			errs = append(errs, fmt.Errorf("tls: keeping the old certificate: %w", err))
		} else {
			reloaded = append(reloaded, "tls ("+next.TLS.Cert+")")
		}
	}
	// The upstreams are not reloaded: the access rules keep the running
	// list (and its clients), whatever the new file lists.
	ac := next
	ac.Upstreams = a.cfg.Upstreams
	if changed, err := a.access.Reload(accessConfig(ac, a.upstreams)); err != nil {
		errs = append(errs, fmt.Errorf("access: keeping the old rules: %w", err))
	} else {
		reloaded = append(reloaded, changed...)
	}
	if next.Storage.MaxSizePercent == 0 && next.Storage.MaxSize != a.maxSize.Load() {
		a.maxSize.Store(next.Storage.MaxSize)
		reloaded = append(reloaded, fmt.Sprintf("storage.max_size (%d bytes)", next.Storage.MaxSize))
		a.committed(0) // evict now if the new cap is under what is stored
	}
	if sameUpstreams(a.cfg.Upstreams, next.Upstreams) {
		for i, u := range next.Upstreams {
			if u.PasswordFile == "" {
				continue
			}
			if _, err := next.Password(i); err != nil {
				errs = append(errs, fmt.Errorf("upstream %s: keeping the old login: %w", u.Name, err))
				continue
			}
			a.upstreams[i].Client.ResetTokens()
			reloaded = append(reloaded, "upstreams["+u.Name+"].password_file")
		}
	}
	restart = needsRestart(a.cfg, next)
	return reloaded, restart, errors.Join(errs...)
}

// sameUpstreams reports whether two upstream lists name the same
// registries at the same URLs with the same credential sources.
func sameUpstreams(a, b []config.Upstream) bool {
	return slices.EqualFunc(a, b, func(x, y config.Upstream) bool {
		return x.Name == y.Name && x.URL == y.URL && x.Username == y.Username &&
			x.Password == y.Password && x.PasswordFile == y.PasswordFile && slices.Equal(x.Aliases, y.Aliases)
	})
}

// needsRestart lists the settings that differ between running and next
// and that only a restart applies.
func needsRestart(running, next config.Config) []string {
	var out []string
	add := func(key string, changed bool) {
		if changed {
			out = append(out, key)
		}
	}
	add("addr", running.Addr != next.Addr)
	add("admin_addr", running.AdminAddr != next.AdminAddr)
	add("admin_token", running.AdminToken != next.AdminToken)
	add("data", running.Data != next.Data)
	add("freshness", running.Freshness != next.Freshness)
	add("fill_timeout", running.FillTimeout != next.FillTimeout)
	add("shutdown_timeout", running.ShutdownTimeout != next.ShutdownTimeout)
	add("prefetch", running.Prefetch != next.Prefetch)
	add("upstreams", !sameUpstreams(running.Upstreams, next.Upstreams))
	add("storage.max_size (as a percentage)", next.Storage.MaxSizePercent != running.Storage.MaxSizePercent)
	add("storage.max_age", running.Storage.MaxAge != next.Storage.MaxAge)
	add("storage.max_blob_size", running.Storage.MaxBlobSize != next.Storage.MaxBlobSize)
	add("tls", running.TLS != next.TLS)
	add("log.format", running.Log.Format != next.Log.Format)
	return out
}
