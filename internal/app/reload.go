package app

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/regcache/regcache/internal/config"
)

// Reload applies next to the running mirror (SIGHUP). Which options a
// reload applies is the option table's reload class (config.Reconcile):
// every changed option is named in reloaded (applied) or in restart (the
// running value is kept until a restart), never in neither. Besides
// changed options, each reload re-reads the TLS pair and the upstreams'
// password files (cached tokens are dropped so the next request logs in
// with the file as it is now), and drops what credential programs
// answered (they run again at the next request). Each part is applied or kept whole: a part
// that fails keeps its old state and its error is returned with the
// others. The log level is the caller's to apply (it owns the logger).
func (a *App) Reload(next config.Config) (reloaded, restart []string, err error) {
	running := a.config()
	switch {
	case next.Storage.MaxSizePercent > 0 && next.Storage.MaxSizePercent == running.Storage.MaxSizePercent:
		// The same share: the cap resolved at start stands (the free
		// space it was measured against has moved since).
		next.Storage.MaxSize = running.Storage.MaxSize
	case next.Storage.MaxSizePercent > 0:
		n, _, err := a.resolveCap(next)
		if err != nil {
			return nil, nil, err
		}
		next.Storage.MaxSize = n
	}
	reloaded = a.reloadSealed(&running, next)
	eff, changes := config.Reconcile(running, next)
	var errs []error
	if a.certs != nil {
		if err := a.certs.reload(); err != nil {
			errs = append(errs, fmt.Errorf("tls: keeping the old certificate: %w", err))
		} else {
			reloaded = append(reloaded, "tls ("+eff.TLS.Cert+")")
		}
	}
	if changed, err := a.access.Reload(accessConfig(eff, a.upstreams)); err != nil {
		errs = append(errs, fmt.Errorf("access: keeping the old rules: %w", err))
		eff.Access = running.Access
		changes = slices.DeleteFunc(changes, func(c config.Change) bool { return strings.HasPrefix(c.Key, "access.") })
	} else {
		reloaded = append(reloaded, changed...)
	}
	if err := a.reloadRules(running, &eff); err != nil {
		errs = append(errs, err)
	}
	if err := a.loadExpected(eff); err != nil {
		errs = append(errs, fmt.Errorf("%w; keeping the old list", err))
		eff.Fleet = running.Fleet
		changes = slices.DeleteFunc(changes, func(c config.Change) bool { return c.Key == "fleet.expected" })
	}
	if eff.Storage.MaxSize != a.maxSize.Load() {
		a.maxSize.Store(eff.Storage.MaxSize)
		reloaded = append(reloaded, fmt.Sprintf("storage.max_size (%d bytes)", eff.Storage.MaxSize))
	}
	if p := scrubPace(eff); p != a.scrub.Pace() {
		a.scrub.SetPace(p)
	}
	for i, u := range eff.Upstreams {
		if u.CredentialHelper != "" || len(u.CredentialCommand) > 0 {
			a.upstreams[i].Client.ResetTokens() // the program runs again at the next request
			reloaded = append(reloaded, "upstreams["+u.Name+"] credential program (asked again at the next request)")
			continue
		}
		if u.PasswordFile == "" {
			continue
		}
		if _, err := eff.Password(i); err != nil {
			errs = append(errs, fmt.Errorf("upstream %s: keeping the old login: %w", u.Name, err))
			continue
		}
		a.upstreams[i].Client.ResetTokens()
		reloaded = append(reloaded, "upstreams["+u.Name+"].password_file (read again)")
	}
	a.cfg.Store(&eff)
	a.committed(0) // evict now if the cap or the age limit now asks for it
	for _, c := range changes {
		switch {
		case c.Reload == config.ReloadRestart:
			restart = append(restart, c.Key)
		case !slices.ContainsFunc(reloaded, func(s string) bool { return strings.HasPrefix(s, c.Key) }):
			reloaded = append(reloaded, c.Key)
		}
	}
	return reloaded, restart, errors.Join(errs...)
}
