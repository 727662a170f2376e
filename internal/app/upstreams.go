package app

import (
	"cmp"
	"log/slog"
	"net/url"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/defaults"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/upstream"
)

// newUpstreams builds a client for each configured upstream, with its
// credentials (a password, a password file re-read at each token request,
// or a credential program) and its bounds on bandwidth and connections.
func newUpstreams(cfg config.Config, log *slog.Logger) ([]*mirror.Upstream, error) {
	var out []*mirror.Upstream
	for i, u := range cfg.Upstreams {
		pw, err := cfg.Password(i)
		if err != nil {
			return nil, err
		}
		opts := []upstream.Option{upstream.WithLogger(log), upstream.WithMaxBandwidth(u.MaxBandwidth), upstream.WithMaxConnections(u.MaxConnections),
			upstream.WithFillConnections(cmp.Or(u.FillConnections, defaults.FillConnections)),
			upstream.WithSealed(u.Sealed || cfg.Sealed), upstream.WithSealedMissStatus(cfg.SealedMissStatus)}
		switch {
		case u.PasswordFile != "": // re-read at each token request: rotation needs no restart
			i, user := i, u.Username
			opts = append(opts, upstream.WithAuth(auth.WithCredentialSource(func() (auth.Credentials, error) {
				pw, err := cfg.Password(i)
				return auth.Credentials{Username: user, Password: pw}, err
			})))
		case u.CredentialHelper != "" || len(u.CredentialCommand) > 0:
			// The program is asked for the registry's own host (an ECR
			// helper reads its account and region there), not the name
			// clients use.
			host := u.URL
			if pu, err := url.Parse(u.URL); err == nil {
				host = pu.Host
			}
			argv := u.CredentialCommand
			if u.CredentialHelper != "" {
				argv = auth.HelperArgv(u.CredentialHelper)
			}
			h := auth.NewHelper(auth.HelperConfig{Argv: argv, Server: auth.ServerOf(host), TTL: u.CredentialTTL, Upstream: u.Name, Log: log})
			opts = append(opts, upstream.WithAuth(auth.WithCredentialHelper(h)))
		}
		c, err := upstream.New(u.Name, u.URL, auth.Credentials{Username: u.Username, Password: pw}, opts...)
		if err != nil {
			return nil, err
		}
		out = append(out, &mirror.Upstream{Name: u.Name, Aliases: u.Aliases, Client: c,
			Fallback: u.Fallback, TrustedTags: u.TrustedTags})
	}
	return out, nil
}
