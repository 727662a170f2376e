package cli

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

func newWarmCmd() *cobra.Command {
	var (
		o             warmOptions
		mirrorFlag    string
		platforms     []string
		username      string
		password      string
		passwordStdin bool
		caCert        string
		insecure      bool
	)
	cmd := &cobra.Command{
		Use:   "warm [flags] IMAGE...",
		Short: "Pre-pull images into a running mirror",
		Long: `Pull images through a running regcache so that the first CI job to ask for
them finds them cached: for each image, its manifest, for a multi-platform
index the manifests of the selected platforms, then every config and layer
blob. Blob bytes are checked against their digests and discarded; nothing is
written locally.

Images are named as for docker pull. A name without a registry (alpine:3.20,
myorg/app) goes to the mirror's default upstream (Docker Hub unless
configured otherwise); a name with one (ghcr.io/owner/app:1) goes to that
upstream through the mirror's path prefix (/v2/ghcr.io/owner/app/...), which
the mirror must have in its upstreams. The tag defaults to latest; name@digest
pins a manifest.

From an index (manifest list), only linux/<this machine's architecture> is
warmed unless --platform or --all-platforms says otherwise. A platform
without a variant matches any variant (linux/arm64 matches linux/arm64/v8).

Every request warm sends, the first probe of /v2/ included, carries the
header X-Regcache-Background: 1. It marks the pull as background work, so
that a mirror which keeps a reserve of its upstream's pull budget for the
pulls of real clients can tell warm's requests from theirs and not spend
that reserve on them; a request the mirror refuses for that reason fails its
image like any other error.

--mirror takes host:port (plain HTTP, as regcache serve listens by default)
or a URL. The probe and every request go over one transport, so --ca-cert
and --insecure apply to all of them.

Progress goes to stderr. The exit status is non-zero if any image failed;
each failure names the image and the mirror's answer.

REGCACHE_WARM_MIRROR, REGCACHE_WARM_USERNAME and REGCACHE_WARM_PASSWORD set
the defaults of --mirror, --username and --password. regcache serve refuses
REGCACHE_* variables it does not know, so set these only where warm runs.`,
		Example: `  # before the CI fleet starts: the mirror on this host, the fleet's images
  regcache warm alpine:3.20 node:22-bookworm ghcr.io/owner/app:1

  # a remote mirror with client logins, for amd64 and arm64 runners
  REGCACHE_WARM_PASSWORD=... regcache warm --mirror https://mirror.ci.example:5000 \
    --username ci --platform linux/amd64 --platform linux/arm64 postgres:16

  # every platform of a pinned index, through a mirror with a private CA
  regcache warm --mirror https://mirror:5000 --ca-cert /etc/regcache/ca.pem \
    --all-platforms alpine@sha256:0123...`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("name at least one image to warm, e.g. regcache warm alpine:3.20")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			mirror, err := parseMirrorURL(mirrorFlag)
			if err != nil {
				return err
			}
			if o.parallel < 1 {
				return fmt.Errorf("--parallel must be at least 1, got %d", o.parallel)
			}
			if !cmd.Flags().Changed("username") {
				username = os.Getenv("REGCACHE_WARM_USERNAME")
			}
			if !cmd.Flags().Changed("password") {
				password = os.Getenv("REGCACHE_WARM_PASSWORD")
			}
			if passwordStdin {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<10))
				if err != nil {
					return fmt.Errorf("read the password from stdin: %w", err)
				}
				password = strings.TrimRight(string(b), "\r\n")
			}
			if password != "" && username == "" {
				return errors.New("a password is set but no --username (or REGCACHE_WARM_USERNAME)")
			}
			if o.allPlatforms && len(platforms) > 0 {
				return errors.New("--platform and --all-platforms exclude each other; use one")
			}
			if len(platforms) == 0 {
				platforms = []string{hostPlatform()}
			}
			for _, p := range platforms {
				pl, err := parsePlatform(p)
				if err != nil {
					return err
				}
				o.platforms = append(o.platforms, pl)
			}
			refs := make([]oci.Image, 0, len(args))
			for _, a := range args {
				r, err := oci.ParseImage(a)
				if err != nil {
					return err
				}
				if strings.EqualFold(r.Registry, mirror.Host) { // named after the mirror itself
					r.Registry = ""
				}
				refs = append(refs, r)
			}
			base, err := mirrorTransport(caCert, insecure)
			if err != nil {
				return err
			}
			rt := headerTransport{base: base, header: http.Header{BackgroundHeader: {"1"}}}
			o.mirror = mirror.String()
			o.client, err = upstream.New("mirror", o.mirror, auth.Credentials{Username: username, Password: password},
				upstream.WithTransport(rt), upstream.WithRetry(3, 500*time.Millisecond),
				// Each image reports the mirror's own answer: a mirror that
				// answers 503 for images its upstream lacks must not make
				// warm fail the next images unasked.
				upstream.WithBreaker(math.MaxInt32, time.Second))
			if err != nil {
				return err
			}
			o.login = username != ""
			o.progress = cmd.ErrOrStderr()
			return warm(cmd.Context(), o, rt, refs)
		},
	}
	f := cmd.Flags()
	f.StringVar(&mirrorFlag, "mirror", envOr("REGCACHE_WARM_MIRROR", "http://127.0.0.1:5000"), "the regcache to warm: host:port (plain HTTP) or URL (env REGCACHE_WARM_MIRROR)")
	f.StringSliceVar(&platforms, "platform", nil, "os/arch[/variant] to warm from an index; repeat or comma-separate for several (default linux/"+runtimeArch()+", this machine's)")
	f.BoolVar(&o.allPlatforms, "all-platforms", false, "warm every manifest of an index")
	f.IntVar(&o.parallel, "parallel", 4, "blobs (and images) fetched at once")
	// Defaults stay empty and the variables are read in RunE: cobra prints
	// a flag's default in --help, and a password must never be printed.
	f.StringVar(&username, "username", "", "login at the mirror, when it has client logins (env REGCACHE_WARM_USERNAME)")
	f.StringVar(&password, "password", "", "password at the mirror; prefer the environment variable or --password-stdin (env REGCACHE_WARM_PASSWORD)")
	f.BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	f.StringVar(&caCert, "ca-cert", "", "PEM file of the CA that signed the mirror's certificate (added to the system's)")
	f.BoolVar(&insecure, "insecure", false, "do not verify the mirror's TLS certificate")
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// parseMirrorURL reads warm's --mirror: host:port or a URL, as the other
// commands take it, and also the /v2 endpoint itself.
func parseMirrorURL(s string) (*url.URL, error) {
	t := strings.TrimRight(strings.TrimSpace(s), "/")
	return parseAddress("--mirror", strings.TrimSuffix(t, "/v2"))
}

// platform is os/arch[/variant].
type platform struct{ OS, Arch, Variant string }

func (p platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func parsePlatform(s string) (platform, error) {
	parts := strings.Split(strings.ToLower(strings.TrimSpace(s)), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return platform{}, fmt.Errorf("--platform %q: want os/arch[/variant], e.g. linux/amd64 or linux/arm/v7", s)
	}
	p := platform{OS: parts[0], Arch: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

func runtimeArch() string { return runtime.GOARCH }

// hostPlatform is linux on this machine's architecture: what its container
// engine pulls.
func hostPlatform() string { return "linux/" + runtimeArch() }

// matches reports whether an index entry's platform is p. A p without a
// variant matches any; arm64 without a variant is v8.
func (p platform) matches(q *v1.Platform) bool {
	if q == nil || !strings.EqualFold(q.OS, p.OS) || !strings.EqualFold(q.Architecture, p.Arch) {
		return false
	}
	return p.Variant == "" || normVariant(p.Arch, p.Variant) == normVariant(p.Arch, strings.ToLower(q.Variant))
}

// platformOf is an index entry's platform.
func platformOf(q *v1.Platform) platform { return platform{q.OS, q.Architecture, q.Variant} }

// normVariant makes arm64's default variant explicit.
func normVariant(arch, v string) string {
	if arch == "arm64" && v == "" {
		return "v8"
	}
	return v
}

func joinPlatforms(ps []platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func describePlatforms(entries []v1.Descriptor) string {
	var s []string
	for _, e := range entries {
		if e.Platform != nil && e.Platform.OS != "unknown" {
			s = append(s, platformOf(e.Platform).String())
		}
	}
	if len(s) == 0 {
		return "no platforms"
	}
	return strings.Join(s, ", ")
}

// humanBytes formats a byte count with IEC units: 512 B, 1.5 KiB, 3.2 GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
