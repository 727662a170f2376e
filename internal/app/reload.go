package app

import (
	"errors"
	"fmt"

	"github.com/regcache/regcache/internal/cache"
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
	r := config.Account{Reloaded: reloaded, Changes: changes}
	a.reloadTLS(eff, &r)
	a.reloadAccess(running, &eff, &r)
	if err := a.reloadRules(running, &eff); err != nil {
		r.Errs = append(r.Errs, err)
	}
	if err := a.reloadPolicy(running, &eff); err != nil {
		r.Fail(err, "policy")
	}
	if err := a.loadExpected(eff); err != nil {
		r.Fail(fmt.Errorf("%w; keeping the old list", err), "fleet.expected")
		eff.Fleet = running.Fleet
	}
	a.reloadStorage(eff, &r)
	a.reloadCredentials(eff, &r)
	a.cfg.Store(&eff)
	a.evictor.Committed(0) // evict now if the cap now asks for it
	reloaded, restart = r.Named()
	return reloaded, restart, errors.Join(r.Errs...)
}

// resolveNextCap puts next's cap in bytes: the same share keeps the cap
// resolved at start (the free space it was measured against has moved
// since); another share is resolved now.
func (a *App) resolveNextCap(running config.Config, next *config.Config) error {
	switch {
	case next.Storage.MaxSizePercent > 0 && next.Storage.MaxSizePercent == running.Storage.MaxSizePercent:
		next.Storage.MaxSize = running.Storage.MaxSize
	case next.Storage.MaxSizePercent > 0:
		n, _, err := cache.ResolveCap(a.capInput(*next))
		if err != nil {
			return err
		}
		next.Storage.MaxSize = n
	}
	return nil
}

// reloadTLS reads the certificate pair again.
func (a *App) reloadTLS(eff config.Config, r *config.Account) {
	if a.certs == nil {
		return
	}
	if err := a.certs.Reload(); err != nil {
		r.Errs = append(r.Errs, fmt.Errorf("tls: keeping the old certificate: %w", err))
		return
	}
	r.Reloaded = append(r.Reloaded, "tls ("+eff.TLS.Cert+")")
}

// reloadAccess applies the access rules, or keeps the old ones whole.
func (a *App) reloadAccess(running config.Config, eff *config.Config, r *config.Account) {
	changed, err := a.access.Reload(accessConfig(*eff, a.upstreams))
	if err != nil {
		r.Fail(fmt.Errorf("access: keeping the old rules: %w", err), "access.")
		eff.Access = running.Access
		return
	}
	r.Reloaded = append(r.Reloaded, changed...)
}

// reloadStorage applies the cap, the age limit and the scrub's pace.
func (a *App) reloadStorage(eff config.Config, r *config.Account) {
	if eff.Storage.MaxSize != a.evictor.MaxSize() {
		a.evictor.SetMaxSize(eff.Storage.MaxSize)
		r.Reloaded = append(r.Reloaded, fmt.Sprintf("storage.max_size (%d bytes)", eff.Storage.MaxSize))
	}
	a.evictor.SetMaxAge(eff.Storage.MaxAge)
	if p := scrubPace(eff); p != a.scrub.Pace() {
		a.scrub.SetPace(p)
	}
}

// reloadCredentials drops the upstreams' tokens so the next request logs
// in again: with the password file as it is now, or with what the
// credential program answers then.
func (a *App) reloadCredentials(eff config.Config, r *config.Account) {
	for i, u := range eff.Upstreams {
		switch {
		case u.CredentialHelper != "" || len(u.CredentialCommand) > 0:
			a.upstreams[i].Client.ResetTokens() // the program runs again at the next request
			r.Reloaded = append(r.Reloaded, "upstreams["+u.Name+"] credential program (asked again at the next request)")
		case u.PasswordFile == "":
		default:
			if _, err := eff.Password(i); err != nil {
				r.Errs = append(r.Errs, fmt.Errorf("upstream %s: keeping the old login: %w", u.Name, err))
				continue
			}
			a.upstreams[i].Client.ResetTokens()
			r.Reloaded = append(r.Reloaded, "upstreams["+u.Name+"].password_file (read again)")
		}
	}
}
