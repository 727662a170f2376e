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
	if err := a.resolveNextCap(running, &next); err != nil {
		return nil, nil, err
	}
	reloaded = a.reloadSealed(&running, next)
	eff, changes := config.Reconcile(running, next)
	r := reload{reloaded: reloaded, changes: changes}
	a.reloadTLS(eff, &r)
	a.reloadAccess(running, &eff, &r)
	if err := a.reloadRules(running, &eff); err != nil {
		r.errs = append(r.errs, err)
	}
	if err := a.reloadPolicy(running, &eff); err != nil {
		r.fail(err, "policy")
	}
	if err := a.loadExpected(eff); err != nil {
		r.fail(fmt.Errorf("%w; keeping the old list", err), "fleet.expected")
		eff.Fleet = running.Fleet
	}
	a.reloadStorage(eff, &r)
	a.reloadCredentials(eff, &r)
	a.cfg.Store(&eff)
	a.committed(0) // evict now if the cap or the age limit now asks for it
	reloaded, restart = r.named()
	return reloaded, restart, errors.Join(r.errs...)
}

// reload is one SIGHUP's account: what was applied, the options changed,
// and the errors of the parts kept as they were.
type reload struct {
	reloaded []string
	changes  []config.Change
	errs     []error
}

// fail records a part that kept its old state: its error, and its keys
// (those starting with prefix) named in neither list.
func (r *reload) fail(err error, prefix string) {
	r.errs = append(r.errs, err)
	r.changes = slices.DeleteFunc(r.changes, func(c config.Change) bool { return strings.HasPrefix(c.Key, prefix) })
}

// named lists every changed option as applied or as needing a restart,
// never neither: a live option no part named is named by its key.
func (r *reload) named() (reloaded, restart []string) {
	reloaded = r.reloaded
	for _, c := range r.changes {
		switch {
		case c.Reload == config.ReloadRestart:
			restart = append(restart, c.Key)
		case !slices.ContainsFunc(reloaded, func(s string) bool { return strings.HasPrefix(s, c.Key) }):
			reloaded = append(reloaded, c.Key)
		}
	}
	return reloaded, restart
}

// resolveNextCap puts next's cap in bytes: the same share keeps the cap
// resolved at start (the free space it was measured against has moved
// since); another share is resolved now.
func (a *App) resolveNextCap(running config.Config, next *config.Config) error {
	switch {
	case next.Storage.MaxSizePercent > 0 && next.Storage.MaxSizePercent == running.Storage.MaxSizePercent:
		next.Storage.MaxSize = running.Storage.MaxSize
	case next.Storage.MaxSizePercent > 0:
		n, _, err := a.resolveCap(*next)
		if err != nil {
			return err
		}
		next.Storage.MaxSize = n
	}
	return nil
}

// reloadTLS reads the certificate pair again.
func (a *App) reloadTLS(eff config.Config, r *reload) {
	if a.certs == nil {
		return
	}
	if err := a.certs.reload(); err != nil {
		r.errs = append(r.errs, fmt.Errorf("tls: keeping the old certificate: %w", err))
		return
	}
	r.reloaded = append(r.reloaded, "tls ("+eff.TLS.Cert+")")
}

// reloadAccess applies the access rules, or keeps the old ones whole.
func (a *App) reloadAccess(running config.Config, eff *config.Config, r *reload) {
	changed, err := a.access.Reload(accessConfig(*eff, a.upstreams))
	if err != nil {
		r.fail(fmt.Errorf("access: keeping the old rules: %w", err), "access.")
		eff.Access = running.Access
		return
	}
	r.reloaded = append(r.reloaded, changed...)
}

// reloadStorage applies the cap and the scrub's pace.
func (a *App) reloadStorage(eff config.Config, r *reload) {
	if eff.Storage.MaxSize != a.maxSize.Load() {
		a.maxSize.Store(eff.Storage.MaxSize)
		r.reloaded = append(r.reloaded, fmt.Sprintf("storage.max_size (%d bytes)", eff.Storage.MaxSize))
	}
	if p := scrubPace(eff); p != a.scrub.Pace() {
		a.scrub.SetPace(p)
	}
}

// reloadCredentials drops the upstreams' tokens so the next request logs
// in again: with the password file as it is now, or with what the
// credential program answers then.
func (a *App) reloadCredentials(eff config.Config, r *reload) {
	for i, u := range eff.Upstreams {
		switch {
		case u.CredentialHelper != "" || len(u.CredentialCommand) > 0:
			a.upstreams[i].Client.ResetTokens() // the program runs again at the next request
			r.reloaded = append(r.reloaded, "upstreams["+u.Name+"] credential program (asked again at the next request)")
		case u.PasswordFile == "":
		default:
			if _, err := eff.Password(i); err != nil {
				r.errs = append(r.errs, fmt.Errorf("upstream %s: keeping the old login: %w", u.Name, err))
				continue
			}
			a.upstreams[i].Client.ResetTokens()
			r.reloaded = append(r.reloaded, "upstreams["+u.Name+"].password_file (read again)")
		}
	}
}
