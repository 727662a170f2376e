package app

import (
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/fleet"
)

// loadExpected hands fleet.expected to the fleet table, its files read
// now (at start and on each SIGHUP).
func (a *App) loadExpected(cfg config.Config) error {
	ps, err := fleet.LoadExpected(cfg.Fleet.Expected)
	if err != nil {
		return err
	}
	a.fleet.SetExpected(ps)
	return nil
}
