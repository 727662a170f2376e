package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/app"
	"github.com/regcache/regcache/internal/config"
)

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the mirror",
		Long: `Run the pull-through mirror.

With no configuration it mirrors Docker Hub anonymously on :5000 and keeps its
cache in ./data (files plus an embedded bbolt index; nothing else to start).
Options come from flags, REGCACHE_* variables and a YAML file (--config), in
that order of precedence. The Distribution registry's REGISTRY_PROXY_REMOTEURL,
REGISTRY_PROXY_USERNAME, REGISTRY_PROXY_PASSWORD, REGISTRY_PROXY_TTL,
REGISTRY_HTTP_ADDR, REGISTRY_HTTP_TLS_CERTIFICATE, REGISTRY_HTTP_TLS_KEY,
REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY, REGISTRY_AUTH_HTPASSWD_PATH and
REGISTRY_LOG_LEVEL work unchanged (below the REGCACHE_* ones), and so does
its config.yml ("version: 0.1") given with --config; other keys and
REGISTRY_* variables are named in one warning at start-up. With no --config,
the first file of REGCACHE_CONFIG_SEARCH (colon-separated) that exists is
read; REGCACHE_DEFAULTS names a YAML file read below every other source (the
container image sets both).`,
		Example: `  regcache serve
  regcache serve --config /etc/regcache/regcache.yaml
  REGISTRY_PROXY_REMOTEURL=https://registry-1.docker.io REGISTRY_PROXY_USERNAME=me \
    REGCACHE_PASSWORD_FILE=/run/secrets/hub-token regcache serve --allow 10.0.0.0/8`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags(), os.LookupEnv)
			if err != nil {
				return err
			}
			var level slog.LevelVar
			log := newLogger(cfg.Log, &level)
			for _, w := range cfg.Warnings {
				log.Warn(w)
			}
			return serve(cmd, cfg, log, &level)
		},
	}
	config.RegisterFlags(cmd.Flags())
	return cmd
}

func serve(cmd *cobra.Command, cfg config.Config, log *slog.Logger, level *slog.LevelVar) error {
	ctx := cmd.Context()
	// SIGHUP reloads (and must not end the process, its default) from the
	// start; one that comes while the mirror starts is applied once it runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	a, err := app.New(ctx, cfg, log)
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w\n%s", err, dataPermissionHint(cfg.Data, os.Getuid()))
	}
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (addr): %w", cfg.Addr, err)
	}
	var adminLn net.Listener
	if cfg.AdminAddr != "" {
		if adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s (admin_addr): %w", cfg.AdminAddr, err)
		}
	}
	warnOpen(cfg, log)
	sum := newStartup(cfg, ln.Addr().String())
	sum.Cap = a.CapSummary() // the cap as applied to this disk
	sum.write(cmd.OutOrStdout())
	sum.log(log)
	log.Debug("settings in effect, as the running parts hold them", slog.Any("settings", a.Status().Settings))
	go func() {
		for range hup {
			reload(cmd, a, level, log)
		}
	}()
	return a.Serve(ctx, ln, adminLn)
}

// reload reads the configuration again (same flags, environment and file)
// and applies what can change without a restart (SIGHUP). A configuration
// that does not load changes nothing.
func reload(cmd *cobra.Command, a *app.App, level *slog.LevelVar, log *slog.Logger) {
	next, err := config.Load(cmd.Flags(), os.LookupEnv)
	if err != nil {
		log.Error("SIGHUP: the configuration does not load; keeping the running one", slog.Any("error", err))
		return
	}
	reloaded, restart, err := a.Reload(next)
	var l slog.Level
	if l.UnmarshalText([]byte(next.Log.Level)) == nil && l != level.Level() {
		level.Set(l) // named by Reload, with every option a reload applies
	}
	attrs := []any{slog.Any("reloaded", reloaded)}
	if len(restart) > 0 {
		attrs = append(attrs, slog.Any("need_restart", restart))
	}
	if err != nil {
		log.Error("SIGHUP: reloaded what loads; kept the old state of the rest", append(attrs, slog.Any("error", err))...)
		return
	}
	log.Info("SIGHUP: configuration reloaded", attrs...)
}

// warnOpen explains the risk of a mirror that holds upstream credentials
// and answers anyone.
func warnOpen(cfg config.Config, log *slog.Logger) {
	creds := false
	for _, u := range cfg.Upstreams {
		creds = creds || u.Username != ""
	}
	open := len(cfg.Access.Allow) == 0
	switch {
	case creds && cfg.Access.Private == config.PrivateAllow && open:
		log.Warn("access.private is allow, upstream credentials are configured and the mirror answers any client: anyone who reaches it can pull every private image those credentials can read; set access.allow (--allow) to your clients' networks, or access.private to deny or authenticated")
	case creds && cfg.Access.Private == config.PrivateAllow:
		log.Warn("access.private is allow: every client in access.allow can pull every private image the upstream credentials can read, without logging in; use access.private authenticated with access.htpasswd to limit that")
	case creds && open && cfg.Access.Htpasswd == "":
		log.Warn("upstream credentials are configured and the mirror answers any client: anyone who reaches it can spend the account's pull rate limit on public images (private ones are refused, access.private: " + cfg.Access.Private + "); set access.allow (--allow) to your clients' networks")
	}
	if cfg.Access.Private == config.PrivateAuthenticated && cfg.Access.Htpasswd == "" {
		log.Warn("access.private is authenticated but access.htpasswd is not set: nobody can log in, so private repositories are refused as with deny")
	}
}

// newLogger is the logger of c; its level is held in level, so a reload
// can change it.
func newLogger(c config.Log, level *slog.LevelVar) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.Level))
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

// imageUser is the user regcache's container image runs as.
const imageUser = 65532

// dataPermissionHint explains a data directory this process (uid) may not
// write: most often the volume an old registry container left, owned by
// root, under the image's user.
func dataPermissionHint(data string, uid int) string {
	return fmt.Sprintf("the data directory %s is not writable by this process (uid %d; regcache's image runs as user %d). A volume the registry image left behind belongs to root: give it to user %d, e.g. on the host `chown -R %d:%d DIR`, or `docker run --rm -v VOLUME:/var/lib/registry busybox chown -R %d:%d /var/lib/registry`",
		data, uid, imageUser, imageUser, imageUser, imageUser, imageUser, imageUser)
}
