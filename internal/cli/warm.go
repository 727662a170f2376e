package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/redact"
)

func newWarmCmd() *cobra.Command {
	var (
		o             warmOptions
		mirror        string
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
			var err error
			if o.mirror, err = parseMirrorURL(mirror); err != nil {
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
			refs := make([]imageRef, 0, len(args))
			for _, a := range args {
				r, err := parseImage(a)
				if err != nil {
					return err
				}
				if strings.EqualFold(r.Registry, o.mirror.Host) { // named after the mirror itself
					r.Registry = ""
				}
				refs = append(refs, r)
			}
			base, err := mirrorTransport(caCert, insecure)
			if err != nil {
				return err
			}
			o.client = &http.Client{Transport: auth.New(base, o.mirror, auth.Credentials{Username: username, Password: password})}
			o.login = username != ""
			o.progress = cmd.ErrOrStderr()
			return warm(cmd.Context(), o, refs)
		},
	}
	f := cmd.Flags()
	f.StringVar(&mirror, "mirror", envOr("REGCACHE_WARM_MIRROR", "http://127.0.0.1:5000"), "URL of the regcache to warm (env REGCACHE_WARM_MIRROR)")
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

func parseMirrorURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/v2") {
		return nil, fmt.Errorf("--mirror %q: want the mirror's base URL, e.g. http://127.0.0.1:5000 or https://mirror.example", redact.URL(s))
	}
	u.Path = ""
	return u, nil
}

func mirrorTransport(caCert string, insecure bool) (http.RoundTripper, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 2 * time.Minute
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // asked for with --insecure
	if caCert != "" {
		pem, err := os.ReadFile(caCert)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-cert %s: no PEM certificate in the file", caCert)
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return t, nil
}

// imageRef is an image as a user names it to docker pull.
type imageRef struct {
	Raw      string
	Registry string // "" for the mirror's default upstream
	Repo     string
	Tag      string
	Digest   digest.Digest
}

// parseImage parses [registry/]name[:tag][@digest]. The first component
// is a registry if it has a '.' or a ':' or is localhost, as for docker.
func parseImage(s string) (imageRef, error) {
	r := imageRef{Raw: s}
	fail := func(why string) (imageRef, error) {
		return imageRef{}, fmt.Errorf("invalid image %q: %s (want e.g. alpine:3.20, myorg/app@sha256:..., ghcr.io/owner/app:1)", s, why)
	}
	rest := strings.TrimSpace(s)
	if rest == "" {
		return fail("empty name")
	}
	if name, dg, ok := strings.Cut(rest, "@"); ok {
		d, err := oci.ParseDigest(dg)
		if err != nil {
			return fail("bad digest")
		}
		r.Digest, rest = d, name
	}
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		r.Tag, rest = rest[i+1:], rest[:i]
		if err := oci.ValidateTag(r.Tag); err != nil {
			return fail("bad tag " + fmt.Sprintf("%q", r.Tag))
		}
	}
	if first, after, ok := strings.Cut(rest, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		if strings.ContainsAny(first, "@?#") {
			return fail("bad registry")
		}
		r.Registry, rest = strings.ToLower(first), after
	}
	if err := oci.ValidateName(rest); err != nil {
		var oe *oci.Error
		if errors.As(err, &oe) {
			return fail(oe.Message)
		}
		return fail(err.Error())
	}
	r.Repo = rest
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// mirrorName is the repository name to ask the mirror for: the default
// upstream at the root, any other registry as a path prefix.
func (r imageRef) mirrorName() string {
	if r.Registry == "" {
		return r.Repo
	}
	return r.Registry + "/" + r.Repo
}

// reference is the manifest reference: the digest when pinned, else the tag.
func (r imageRef) reference() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
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
func (p platform) matches(q *wirePlatform) bool {
	if q == nil || !strings.EqualFold(q.OS, p.OS) || !strings.EqualFold(q.Architecture, p.Arch) {
		return false
	}
	return p.Variant == "" || normVariant(p.Arch, p.Variant) == normVariant(p.Arch, strings.ToLower(q.Variant))
}

// normVariant makes arm64's default variant explicit.
func normVariant(arch, v string) string {
	if arch == "arm64" && v == "" {
		return "v8"
	}
	return v
}

// The parts of manifests and indexes warm reads.
type wirePlatform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

type wireDescriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	URLs      []string      `json:"urls,omitempty"`
	Platform  *wirePlatform `json:"platform,omitempty"`
}

type wireManifest struct {
	SchemaVersion int              `json:"schemaVersion"`
	MediaType     string           `json:"mediaType"`
	Config        *wireDescriptor  `json:"config"`
	Layers        []wireDescriptor `json:"layers"`
	Manifests     []wireDescriptor `json:"manifests"`
	Blobs         []wireDescriptor `json:"blobs"` // OCI artifact manifest (1.1 rc)
}

func (m wireManifest) isIndex(mediaType string) bool {
	return oci.IsIndex(mediaType) || oci.IsIndex(m.MediaType) || (m.Config == nil && len(m.Manifests) > 0)
}

// foreign reports a layer the registry does not hold (Windows base layers
// and other non-distributable content): clients fetch it from its URLs.
func (d wireDescriptor) foreign() bool {
	return len(d.URLs) > 0 || strings.Contains(d.MediaType, "foreign") || strings.Contains(d.MediaType, "nondistributable")
}

type warmOptions struct {
	mirror       *url.URL
	client       *http.Client
	login        bool
	platforms    []platform
	allPlatforms bool
	parallel     int
	progress     io.Writer
	interval     time.Duration // between progress lines of a running image
}

// warmer pulls images through the mirror. Blobs shared by several images
// are fetched once per run.
type warmer struct {
	warmOptions
	blobSem chan struct{}
	out     sync.Mutex // progress lines

	mu    sync.Mutex
	blobs map[digest.Digest]*blobFlight
}

type blobFlight struct {
	done chan struct{}
	err  error
}

// imageRun is one image's progress.
type imageRun struct {
	ref     imageRef
	start   time.Time
	blobs   int
	total   int64
	done    atomic.Int32
	bytes   atomic.Int64 // received from the mirror
	skipped int          // foreign layers
}

func (r *imageRun) rate() float64 {
	s := time.Since(r.start).Seconds()
	if s <= 0 {
		return 0
	}
	return float64(r.bytes.Load()) / s
}

func warm(ctx context.Context, o warmOptions, refs []imageRef) error {
	if o.interval == 0 {
		o.interval = 2 * time.Second
	}
	w := &warmer{warmOptions: o, blobSem: make(chan struct{}, o.parallel), blobs: map[digest.Digest]*blobFlight{}}
	start := time.Now()
	if err := w.ping(ctx); err != nil {
		return err
	}
	runs := make([]*imageRun, len(refs))
	errs := make([]error, len(refs))
	imgSem := make(chan struct{}, o.parallel)
	var wg sync.WaitGroup
	for i, ref := range refs {
		runs[i] = &imageRun{ref: ref}
		wg.Go(func() {
			imgSem <- struct{}{}
			defer func() { <-imgSem }()
			errs[i] = w.image(ctx, runs[i])
			if errs[i] != nil {
				w.printf("%s: failed\n", ref.Raw) // the details end the run's error
			}
		})
	}
	wg.Wait()
	var failed []string
	var blobs int
	var bytes int64
	for i, r := range runs {
		blobs += int(r.done.Load())
		bytes += r.bytes.Load()
		if errs[i] != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", r.ref.Raw, errs[i]))
		}
	}
	el := time.Since(start)
	w.printf("warmed %d of %d images: %d blobs, %s received in %s (%s/s)\n", len(refs)-len(failed), len(refs),
		blobs, humanBytes(bytes), el.Round(time.Millisecond), humanBytes(int64(float64(bytes)/max(el.Seconds(), 0.001))))
	if len(failed) > 0 {
		return fmt.Errorf("warm failed for %d of %d images:\n  %s", len(failed), len(refs), strings.Join(failed, "\n  "))
	}
	return nil
}

func (w *warmer) printf(format string, args ...any) {
	w.out.Lock()
	defer w.out.Unlock()
	fmt.Fprintf(w.progress, format, args...)
}

// ping checks once that the mirror answers, so an unreachable mirror is
// one clear error rather than one per image.
func (w *warmer) ping(ctx context.Context) error {
	resp, err := w.get(ctx, "/v2/", nil)
	if err != nil {
		return err
	}
	defer drainClose(resp)
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
		return nil // a 401 here is the login challenge; image requests answer it
	}
	return w.mirrorError(resp, "")
}

func (w *warmer) get(ctx context.Context, path string, accept []string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.mirror.String()+path, nil)
	if err != nil {
		return nil, err
	}
	for _, a := range accept {
		req.Header.Add("Accept", a)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		var te *auth.TokenError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("log in to the mirror at %s: %w (check --username and --password)", w.mirror, te)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("reach the mirror at %s: %w (is regcache serve running there? set --mirror or REGCACHE_WARM_MIRROR)", w.mirror, unwrapURLError(err))
	}
	return resp, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func drainClose(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// mirrorError turns a failed answer into an error that quotes the mirror's
// error envelope and says what to do about it.
func (w *warmer) mirrorError(resp *http.Response, registry string) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var env struct {
		Errors []oci.Error `json:"errors"`
	}
	msg := fmt.Sprintf("mirror answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	code := oci.ErrorCode("")
	if json.Unmarshal(body, &env) == nil && len(env.Errors) > 0 {
		code = env.Errors[0].Code
		msg += ": " + string(code)
		if m := env.Errors[0].Message; m != "" {
			msg += ": " + m
		}
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized && w.login:
		msg += " (the mirror refused the login: check --username and --password)"
	case resp.StatusCode == http.StatusUnauthorized:
		msg += " (the mirror wants a login: --username with --password, --password-stdin or REGCACHE_WARM_PASSWORD)"
	case code == oci.ErrDenied || resp.StatusCode == http.StatusForbidden:
		msg += " (the mirror does not let this client pull this repository: see its access settings)"
	case code == oci.ErrManifestUnknown:
		msg += " (no such tag or digest upstream)"
	case code == oci.ErrNameUnknown && strings.Contains(msg, "not configured"): // the mirror says what to do
	case code == oci.ErrNameUnknown && registry != "":
		msg += fmt.Sprintf(" (no such repository at %s, or the mirror has no upstream named %s)", registry, registry)
	case code == oci.ErrNameUnknown:
		msg += " (no such repository at the mirror's default upstream)"
	case resp.StatusCode == http.StatusTooManyRequests:
		msg += " (upstream rate limit"
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			msg += "; retry after " + ra + "s"
		}
		msg += ")"
	}
	return errors.New(msg)
}

// image warms one image: manifests, then blobs.
func (w *warmer) image(ctx context.Context, r *imageRun) error {
	r.start = time.Now()
	var blobs []wireDescriptor
	seen := map[digest.Digest]bool{}
	var notes, picked []string
	var walk func(ref string, depth int) error
	walk = func(ref string, depth int) error {
		m, mt, err := w.manifest(ctx, r.ref, ref)
		if err != nil {
			return err
		}
		if m.isIndex(mt) {
			if depth > 2 {
				return fmt.Errorf("manifest %s: indexes nested too deep", ref)
			}
			children, missing := w.selectManifests(m.Manifests)
			if len(children) == 0 {
				return fmt.Errorf("the index has no manifest for %s (it has %s): choose with --platform, or use --all-platforms",
					joinPlatforms(w.platforms), describePlatforms(m.Manifests))
			}
			for _, p := range missing {
				notes = append(notes, "no "+p.String()+" in the index")
			}
			for _, c := range children {
				if c.Platform != nil && !w.allPlatforms {
					picked = append(picked, platform{c.Platform.OS, c.Platform.Architecture, c.Platform.Variant}.String())
				}
				if err := walk(c.Digest.String(), depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		if m.SchemaVersion == 1 {
			return fmt.Errorf("manifest %s is Docker schema 1, which regcache does not warm", ref)
		}
		all := append([]wireDescriptor{}, m.Layers...)
		all = append(all, m.Blobs...)
		if m.Config != nil {
			all = append([]wireDescriptor{*m.Config}, all...)
		}
		for _, d := range all {
			switch {
			case d.foreign():
				r.skipped++
			case d.Digest.Validate() != nil:
				return fmt.Errorf("manifest %s references an invalid digest %q", ref, d.Digest)
			case !seen[d.Digest]:
				seen[d.Digest] = true
				blobs = append(blobs, d)
				r.total += d.Size
			}
		}
		return nil
	}
	if err := walk(r.ref.reference(), 0); err != nil {
		return err
	}
	r.blobs = len(blobs)
	line := fmt.Sprintf("%s: %d blobs, %s", r.ref.Raw, len(blobs), humanBytes(r.total))
	if len(picked) > 0 {
		line = fmt.Sprintf("%s: %s: %d blobs, %s", r.ref.Raw, strings.Join(picked, ", "), len(blobs), humanBytes(r.total))
	}
	if r.skipped > 0 {
		line += fmt.Sprintf(" (%d foreign layers skipped: clients fetch them from their URLs)", r.skipped)
	}
	for _, n := range notes {
		line += "; " + n
	}
	w.printf("%s\n", line)

	stop := make(chan struct{})
	ticker := sync.WaitGroup{}
	ticker.Go(func() {
		t := time.NewTicker(w.interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				w.printf("%s: %d/%d blobs, %s of %s, %s/s\n", r.ref.Raw, r.done.Load(), r.blobs,
					humanBytes(r.bytes.Load()), humanBytes(r.total), humanBytes(int64(r.rate())))
			}
		}
	})
	var errMu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, d := range blobs {
		wg.Go(func() {
			if err := w.blob(ctx, r, d); err != nil {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
				return
			}
			r.done.Add(1)
		})
	}
	wg.Wait()
	close(stop)
	ticker.Wait()
	if len(errs) > 0 {
		if len(errs) > 3 {
			errs = append(errs[:3], fmt.Errorf("and %d more blobs", len(errs)-3))
		}
		return errors.Join(errs...)
	}
	el := time.Since(r.start)
	w.printf("%s: done: %d blobs, %s in %s (%s/s)\n", r.ref.Raw, r.blobs, humanBytes(r.total),
		el.Round(time.Millisecond), humanBytes(int64(r.rate())))
	return nil
}

// selectManifests picks the index entries to warm, and names the asked
// platforms the index lacks.
func (w *warmer) selectManifests(entries []wireDescriptor) (out []wireDescriptor, missing []platform) {
	if w.allPlatforms {
		return entries, nil
	}
	for _, p := range w.platforms {
		found := false
		for _, e := range entries {
			if p.matches(e.Platform) {
				out = append(out, e)
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, p)
		}
	}
	return out, missing
}

func joinPlatforms(ps []platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func describePlatforms(entries []wireDescriptor) string {
	var s []string
	for _, e := range entries {
		if e.Platform != nil && e.Platform.OS != "unknown" {
			s = append(s, platform{e.Platform.OS, e.Platform.Architecture, e.Platform.Variant}.String())
		}
	}
	if len(s) == 0 {
		return "no platforms"
	}
	return strings.Join(s, ", ")
}

// manifest GETs a manifest through the mirror and checks its digest.
func (w *warmer) manifest(ctx context.Context, img imageRef, ref string) (wireManifest, string, error) {
	var m wireManifest
	resp, err := w.get(ctx, "/v2/"+img.mirrorName()+"/manifests/"+ref, oci.ManifestMediaTypes)
	if err != nil {
		return m, "", err
	}
	defer drainClose(resp)
	if resp.StatusCode != http.StatusOK {
		return m, "", fmt.Errorf("manifest %s: %w", ref, w.mirrorError(resp, img.Registry))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, oci.MaxManifestSize+1))
	if err != nil {
		return m, "", fmt.Errorf("manifest %s: read: %w", ref, err)
	}
	if len(body) > oci.MaxManifestSize {
		return m, "", fmt.Errorf("manifest %s: larger than %d bytes", ref, oci.MaxManifestSize)
	}
	want, err := digest.Parse(ref)
	if err != nil {
		if want, err = digest.Parse(resp.Header.Get("Docker-Content-Digest")); err != nil {
			want = ""
		}
	}
	if want != "" && want.Algorithm().Available() && want.Algorithm().FromBytes(body) != want {
		return m, "", fmt.Errorf("manifest %s: the mirror's bytes do not hash to %s", ref, want)
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return m, "", fmt.Errorf("manifest %s: not JSON: %w", ref, err)
	}
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return m, strings.TrimSpace(mt), nil
}

// blob fetches a blob through the mirror once per run, retrying a
// transfer that broke off.
func (w *warmer) blob(ctx context.Context, r *imageRun, d wireDescriptor) error {
	w.mu.Lock()
	f, ok := w.blobs[d.Digest]
	if !ok {
		f = &blobFlight{done: make(chan struct{})}
		w.blobs[d.Digest] = f
	}
	w.mu.Unlock()
	if ok { // another image of this run has (or is fetching) it
		select {
		case <-f.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if f.err == nil {
			return nil
		}
	}
	defer func() {
		if !ok {
			close(f.done)
		}
	}()
	select {
	case w.blobSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-w.blobSem }()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var retry bool
		retry, err = w.fetchBlob(ctx, r, d)
		if err == nil || !retry || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
	}
	if !ok {
		f.err = err
	}
	return err
}

// fetchBlob reads one blob to the end, checking its length and digest as
// the bytes arrive, and says whether a failure is worth a retry.
func (w *warmer) fetchBlob(ctx context.Context, r *imageRun, d wireDescriptor) (retry bool, err error) {
	resp, err := w.get(ctx, "/v2/"+r.ref.mirrorName()+"/blobs/"+d.Digest.String(), nil)
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout
		return retry, fmt.Errorf("blob %s: %w", d.Digest, w.mirrorError(resp, r.ref.Registry))
	}
	if resp.ContentLength >= 0 && d.Size > 0 && resp.ContentLength != d.Size {
		return false, fmt.Errorf("blob %s: the mirror announced %d bytes, the manifest says %d", d.Digest, resp.ContentLength, d.Size)
	}
	v := d.Digest.Verifier()
	n, err := io.Copy(v, &countingReader{r: resp.Body, n: &r.bytes})
	if err != nil {
		return true, fmt.Errorf("blob %s: transfer broke off after %d bytes: %w", d.Digest, n, err)
	}
	if d.Size > 0 && n != d.Size {
		return true, fmt.Errorf("blob %s: got %d bytes, want %d", d.Digest, n, d.Size)
	}
	if !v.Verified() {
		return true, fmt.Errorf("blob %s: the mirror's bytes do not hash to the digest", d.Digest)
	}
	return false, nil
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
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
