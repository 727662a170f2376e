package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// BackgroundHeader marks warm's requests to the mirror as background work
// (oci.BackgroundHeader), so that the mirror keeps a reserve of its
// upstream's pull budget for the pulls of real clients.
const BackgroundHeader = oci.BackgroundHeader

// headerTransport sets fixed headers on every request it sends.
type headerTransport struct {
	base   http.RoundTripper
	header http.Header
}

func (t headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range t.header {
		req.Header[k] = v
	}
	return t.base.RoundTrip(req)
}

// blobAttempts bounds how often one blob is asked for when its transfer
// breaks off or its bytes come out wrong (a broken transfer resumes where
// it stopped, with Range).
const blobAttempts = 3

type warmOptions struct {
	mirror       string // base URL, for messages
	client       *upstream.Client
	login        bool
	platforms    []platform
	allPlatforms bool
	parallel     int
	progress     io.Writer
	interval     time.Duration // between progress lines of a running image
}

// warmer pulls images through the mirror with the upstream client (its
// retries, authentication and error envelope). A blob shared by several
// images is fetched once per run.
type warmer struct {
	warmOptions
	blobSem *semaphore.Weighted
	flights singleflight.Group
	out     sync.Mutex // progress lines

	mu      sync.Mutex
	fetched map[digest.Digest]bool
}

// imageRun is one image's progress.
type imageRun struct {
	ref     oci.Image
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

// warm warms refs, after one probe of the mirror (over rt, the client's
// transport) so that an unreachable mirror is one clear error rather than
// one per image.
func warm(ctx context.Context, o warmOptions, rt http.RoundTripper, refs []oci.Image) error {
	if o.interval == 0 {
		o.interval = 2 * time.Second
	}
	w := &warmer{warmOptions: o, blobSem: semaphore.NewWeighted(int64(o.parallel)), fetched: map[digest.Digest]bool{}}
	start := time.Now()
	if err := pingMirror(ctx, rt, o.mirror, 0); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errNotRegistry) {
			return err
		}
		return fmt.Errorf("%w (is regcache serve running there? set --mirror or REGCACHE_WARM_MIRROR)", err)
	}
	runs := make([]*imageRun, len(refs))
	errs := make([]error, len(refs))
	imgSem := semaphore.NewWeighted(int64(o.parallel))
	var wg sync.WaitGroup
	for i, ref := range refs {
		runs[i] = &imageRun{ref: ref}
		wg.Go(func() {
			if errs[i] = imgSem.Acquire(ctx, 1); errs[i] != nil {
				return
			}
			defer imgSem.Release(1)
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

// explain turns an error of the upstream client into one that quotes the
// mirror's answer and says what to do about it. registry is the registry
// the image named ("" for the mirror's default upstream).
func (w *warmer) explain(err error, registry string) error {
	if c, _ := upstream.Classify(err); c == upstream.LoginRefused {
		return fmt.Errorf("log in to the mirror at %s: %w (check --username and --password)", w.mirror, err)
	}
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return err
	}
	switch {
	case errors.Is(ue.Err, context.Canceled), errors.Is(ue.Err, context.DeadlineExceeded):
		return ue.Err
	case errors.Is(ue.Err, upstream.ErrUpstreamDown), errors.Is(ue.Err, upstream.ErrRateLimited):
		return fmt.Errorf("the mirror at %s: %w", w.mirror, ue.Err)
	case ue.StatusCode == 0:
		return fmt.Errorf("reach the mirror at %s: %w (is regcache serve running there? set --mirror or REGCACHE_WARM_MIRROR)", w.mirror, ue.Err)
	}
	msg := fmt.Sprintf("mirror answered %d %s", ue.StatusCode, http.StatusText(ue.StatusCode))
	code := oci.ErrorCode("")
	if len(ue.Errors) > 0 {
		code = ue.Errors[0].Code
		msg += ": " + string(code)
		if m := ue.Errors[0].Message; m != "" {
			msg += ": " + m
		}
	}
	switch {
	case ue.StatusCode == http.StatusUnauthorized && w.login:
		msg += " (the mirror refused the login: check --username and --password)"
	case ue.StatusCode == http.StatusUnauthorized:
		msg += " (the mirror wants a login: --username with --password, --password-stdin or REGCACHE_WARM_PASSWORD)"
	case code == oci.ErrDenied || ue.StatusCode == http.StatusForbidden:
		msg += " (the mirror does not let this client pull this repository: see its access settings)"
	case code == oci.ErrManifestUnknown:
		msg += " (no such tag or digest upstream)"
	case code == oci.ErrNameUnknown && strings.Contains(msg, "not configured"): // the mirror says what to do
	case code == oci.ErrNameUnknown && registry != "":
		msg += fmt.Sprintf(" (no such repository at %s, or the mirror has no upstream named %s)", registry, registry)
	case code == oci.ErrNameUnknown:
		msg += " (no such repository at the mirror's default upstream)"
	case ue.StatusCode == http.StatusTooManyRequests:
		msg += " (upstream rate limit"
		if ue.RetryAfter != "" {
			msg += "; retry after " + ue.RetryAfter + "s"
		}
		msg += ")"
	}
	return errors.New(msg)
}

// image warms one image: manifests, then blobs.
func (w *warmer) image(ctx context.Context, r *imageRun) error {
	r.start = time.Now()
	var blobs []v1.Descriptor
	seen := map[digest.Digest]bool{}
	var notes, picked []string
	var walk func(ref oci.Reference, depth int) error
	walk = func(ref oci.Reference, depth int) error {
		m, mt, err := w.manifest(ctx, r.ref, ref)
		if err != nil {
			return err
		}
		if m.IsIndexOf(mt) {
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
					picked = append(picked, platformOf(c.Platform).String())
				}
				if c.Digest.Validate() != nil {
					return fmt.Errorf("manifest %s references an invalid digest %q", ref, c.Digest)
				}
				if err := walk(oci.Reference{Digest: c.Digest}, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		if m.SchemaVersion == 1 {
			return fmt.Errorf("manifest %s is Docker schema 1, which regcache does not warm", ref)
		}
		all := append([]v1.Descriptor{}, m.Layers...)
		all = append(all, m.Blobs...)
		if m.HasConfig() {
			all = append([]v1.Descriptor{m.Config}, all...)
		}
		for _, d := range all {
			switch {
			case oci.IsForeign(d):
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
	if err := walk(r.ref.Reference(), 0); err != nil {
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
	var ticker sync.WaitGroup
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
func (w *warmer) selectManifests(entries []v1.Descriptor) (out []v1.Descriptor, missing []platform) {
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

// manifest GETs a manifest through the mirror; the upstream client bounds
// its size and checks its digest.
func (w *warmer) manifest(ctx context.Context, img oci.Image, ref oci.Reference) (oci.Content, string, error) {
	m, err := w.client.ManifestGet(ctx, img.MirrorName(), ref, oci.ManifestMediaTypes)
	if err != nil {
		return oci.Content{}, "", fmt.Errorf("manifest %s: %w", ref, w.explain(err, img.Registry))
	}
	c, err := oci.DecodeContent(m.Body)
	if err != nil {
		return c, "", fmt.Errorf("manifest %s: not JSON: %w", ref, err)
	}
	return c, m.MediaType, nil
}

// blob fetches a blob through the mirror once per run: an image that needs
// a blob another image of the run is fetching waits for that fetch and
// shares its outcome; one that needs a blob already fetched takes it as
// done.
func (w *warmer) blob(ctx context.Context, r *imageRun, d v1.Descriptor) error {
	w.mu.Lock()
	done := w.fetched[d.Digest]
	w.mu.Unlock()
	if done {
		return nil
	}
	ch := w.flights.DoChan(d.Digest.String(), func() (any, error) {
		if err := w.blobSem.Acquire(ctx, 1); err != nil {
			return nil, err
		}
		defer w.blobSem.Release(1)
		if err := w.fetchBlob(ctx, r, d); err != nil {
			return nil, err
		}
		w.mu.Lock()
		w.fetched[d.Digest] = true
		w.mu.Unlock()
		return nil, nil
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fetchBlob reads one blob to the end, checking its length and digest as
// the bytes arrive. A transfer that breaks off resumes where it stopped;
// bytes that come out wrong are asked for again from the start, up to
// blobAttempts requests in all. (Connection errors and 5xx answers before
// a body are the upstream client's to retry, with a backoff that ends with
// the context.)
func (w *warmer) fetchBlob(ctx context.Context, r *imageRun, d v1.Descriptor) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("blob %s: %s", d.Digest, fmt.Sprintf(format, args...))
	}
	v := d.Digest.Verifier()
	var n int64 // bytes of the blob verified so far
	var last error
	for range blobAttempts {
		b, err := w.client.BlobGet(ctx, r.ref.MirrorName(), d.Digest, n)
		if err != nil {
			return fmt.Errorf("blob %s: %w", d.Digest, w.explain(err, r.ref.Registry))
		}
		if b.Size >= 0 && d.Size > 0 && b.Size != d.Size {
			b.Body.Close()
			return fail("the mirror announced %d bytes, the manifest says %d", b.Size, d.Size)
		}
		body := io.Reader(&countingReader{r: b.Body, n: &r.bytes})
		if skip := n - b.Offset; skip > 0 { // the mirror ignored the Range
			if _, err := io.CopyN(io.Discard, body, skip); err != nil {
				b.Body.Close()
				last = fail("transfer broke off after %d bytes: %v", b.Offset, err)
				continue
			}
		}
		if d.Size > 0 {
			body = io.LimitReader(body, d.Size-n+1) // a longer body is wrong; read no more of it
		}
		got, err := io.Copy(v, body)
		b.Body.Close()
		n += got
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			last = fail("transfer broke off after %d bytes: %v", n, err)
			continue // resume at n
		case d.Size > 0 && n != d.Size:
			last = fail("got %d bytes, want %d", n, d.Size)
		case !v.Verified():
			last = fail("the mirror's bytes do not hash to the digest")
		default:
			return nil
		}
		v, n = d.Digest.Verifier(), 0 // wrong bytes: start again
	}
	return last
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
