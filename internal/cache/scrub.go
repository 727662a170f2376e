// Package cache keeps the cache in shape, over any blobstore.Store and
// index: the background scrub that re-hashes what is stored. It asks a
// backend for more only through small capability interfaces (Quarantiner),
// so the disk and S3 stores are scrubbed alike.
package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/regcache/regcache/internal/blobstore"
)

// Quarantiner is a store that can set damaged content aside (out of every
// request's reach, kept for a look) rather than delete it. It returns where
// the content went; content already gone is no error.
type Quarantiner interface {
	Quarantine(ctx context.Context, d digest.Digest) (string, error)
}

// Pace is how fast the scrub goes: one whole pass over the store in
// Interval, never reading more than Rate bytes a second. Interval 0 is off.
type Pace struct {
	Interval time.Duration
	Rate     int64
}

// ScrubStatus is what the background scrub has done.
type ScrubStatus struct {
	Enabled  bool          `json:"enabled"`
	Interval time.Duration `json:"interval"`
	Rate     int64         `json:"rate"`
	// Pass counts passes begun; PassStarted is when the current (or last)
	// began, LastPassEnd when the last one ended.
	Pass        int       `json:"pass"`
	PassStarted time.Time `json:"passStarted,omitzero"`
	LastPassEnd time.Time `json:"lastPassEnd,omitzero"`
	// Checked and Bytes are what the current (or last) pass has re-hashed.
	Checked int64 `json:"checked"`
	Bytes   int64 `json:"bytes"`
	// Damaged are the digests found damaged (quarantined and dropped from
	// the index) since start, the last maxDamaged of them; DamagedTotal
	// counts them all.
	Damaged      []digest.Digest `json:"damaged,omitempty"`
	DamagedTotal int64           `json:"damagedTotal"`
	// Skipped counts passes another replica of the cluster ran instead.
	Skipped int64 `json:"skipped,omitempty"`
}

// chunk is what the scrub reads between two waits.
const chunk = 256 << 10

// emptyWait is how long the scrub waits for content when the store is
// empty (or the interval, if shorter).
const emptyWait = time.Hour

// maxDamaged bounds the damaged digests the scrub remembers for its status.
const maxDamaged = 100

// Scrub re-hashes every stored blob, pass after pass. A blob that does not
// hash to its digest (or is shorter or longer than its stored size) is
// quarantined where the store can, deleted where it cannot, and forgotten
// (its index entry and anything held in memory), so the next request
// fetches it again.
type Scrub struct {
	store  blobstore.Store
	forget func(context.Context, digest.Digest)
	log    *slog.Logger
	// once runs one pass on one replica at a time and reports whether it
	// ran; nil runs every pass here.
	once func(ctx context.Context, fn func()) bool
	wake chan struct{}

	mu   sync.Mutex
	pace Pace
	st   ScrubStatus
}

// ScrubOption configures a Scrub.
type ScrubOption func(*Scrub)

// WithScrubLogger logs passes and damage to l.
func WithScrubLogger(l *slog.Logger) ScrubOption { return func(s *Scrub) { s.log = l } }

// WithOnce makes one replica of a cluster run each pass: once runs fn
// unless another replica holds the pass, and says whether it ran.
func WithOnce(once func(ctx context.Context, fn func()) bool) ScrubOption {
	return func(s *Scrub) { s.once = once }
}

// NewScrub returns the scrub of store at pace; forget drops a damaged
// digest from the index and from memory.
func NewScrub(store blobstore.Store, pace Pace, forget func(context.Context, digest.Digest), opts ...ScrubOption) *Scrub {
	s := &Scrub{store: store, forget: forget, pace: pace, log: slog.New(slog.DiscardHandler),
		wake: make(chan struct{}, 1)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// SetPace changes the pace; it takes effect at once (a scrub that was off
// starts, one that was on stops after the blob it is reading).
func (s *Scrub) SetPace(p Pace) {
	s.mu.Lock()
	s.pace = p
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Pace is the pace in effect.
func (s *Scrub) Pace() Pace {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pace
}

// Status reports the scrub's settings and progress.
func (s *Scrub) Status() ScrubStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Enabled, st.Interval, st.Rate = s.pace.Interval > 0, s.pace.Interval, s.pace.Rate
	st.Damaged = append([]digest.Digest(nil), st.Damaged...)
	return st
}

// Run scrubs until ctx is done: each pass paced to last the interval,
// then a wait for the next. While the interval is 0 it waits for SetPace.
func (s *Scrub) Run(ctx context.Context) {
	for ctx.Err() == nil {
		p := s.Pace()
		if p.Interval <= 0 {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
			continue
		}
		start := time.Now()
		var n int64
		var err error
		ran := true
		if s.once == nil {
			n, err = s.Pass(ctx)
		} else {
			ran = s.once(ctx, func() { n, err = s.Pass(ctx) })
		}
		if !ran {
			s.mu.Lock()
			s.st.Skipped++
			s.mu.Unlock()
		}
		wait := time.Until(start.Add(p.Interval))
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("background scrub", slog.Any("error", err))
			wait = time.Minute
		case ran && n == 0:
			wait = min(p.Interval, emptyWait)
		}
		if !s.waitOrWake(ctx, wait) {
			return
		}
	}
}

// waitOrWake waits d, or less when the pace changes; false when ctx ended.
func (s *Scrub) waitOrWake(ctx context.Context, d time.Duration) bool {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.wake:
			cancel()
		case <-wctx.Done():
		}
	}()
	sleepCtx(wctx, d)
	return ctx.Err() == nil
}

// Pass re-hashes every stored blob once and returns how many it checked.
func (s *Scrub) Pass(ctx context.Context) (int64, error) {
	var total int64
	if err := s.store.Walk(ctx, func(_ digest.Digest, size int64) error { total += size; return nil }); err != nil {
		return 0, fmt.Errorf("scrub: size of the store: %w", err)
	}
	p := s.Pace()
	perSecond := float64(max(p.Rate, 1))
	if iv := p.Interval.Seconds(); iv > 0 && total > 0 {
		perSecond = min(perSecond, max(float64(total)/iv, 1))
	}
	lim := rate.NewLimiter(rate.Limit(perSecond), chunk)
	pace := func(ctx context.Context, n int) error {
		now := time.Now()
		r := lim.ReserveN(now, min(n, chunk))
		if !sleepCtx(ctx, r.DelayFrom(now)) {
			return ctx.Err()
		}
		return nil
	}
	s.mu.Lock()
	s.st.Pass++
	s.st.PassStarted, s.st.Checked, s.st.Bytes = time.Now(), 0, 0
	s.mu.Unlock()
	var checked int64
	err := s.store.Walk(ctx, func(d digest.Digest, size int64) error {
		if err := s.blob(ctx, d, size, pace); err != nil {
			return err
		}
		checked++
		s.mu.Lock()
		s.st.Checked++
		s.st.Bytes += size
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		return checked, err
	}
	s.mu.Lock()
	s.st.LastPassEnd = time.Now()
	st := s.st
	s.mu.Unlock()
	if checked > 0 {
		s.log.Info("background scrub pass done", slog.Int("pass", st.Pass), slog.Int64("blobs", st.Checked), slog.Int64("bytes", st.Bytes),
			slog.Duration("took", st.LastPassEnd.Sub(st.PassStarted).Round(time.Second)))
	}
	return checked, nil
}

// blob re-hashes one blob; damaged content is set aside and forgotten.
// Only the context's end stops the pass: a blob that cannot be read now
// (gone meanwhile, a passing store error) is logged and passed over.
func (s *Scrub) blob(ctx context.Context, d digest.Digest, size int64, pace func(context.Context, int) error) error {
	err := verify(ctx, s.store, d, size, pace)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, blobstore.ErrNotFound):
		return nil // deleted since the walk listed it
	case !errors.Is(err, blobstore.ErrDigestMismatch) && !errors.Is(err, blobstore.ErrSizeMismatch):
		s.log.Warn("background scrub: cannot read a cache file", slog.String("digest", d.String()), slog.Any("error", err))
		return nil
	}
	where, qerr := setAside(ctx, s.store, d)
	if qerr != nil {
		s.log.Error("background scrub: cannot set a damaged cache file aside", slog.String("digest", d.String()), slog.Any("error", qerr))
		return nil
	}
	s.log.Error("the background scrub found a damaged cache file: set aside and dropped, the next request fetches it again",
		slog.String("digest", d.String()), slog.Any("damage", err), slog.String("quarantine", where))
	s.forget(context.WithoutCancel(ctx), d) // set aside: its entry goes too, even as the pass ends
	s.mu.Lock()
	s.st.DamagedTotal++
	s.st.Damaged = append(s.st.Damaged, d)
	if len(s.st.Damaged) > maxDamaged {
		s.st.Damaged = s.st.Damaged[1:]
	}
	s.mu.Unlock()
	return nil
}

// setAside quarantines d where the store can, and deletes it otherwise.
func setAside(ctx context.Context, store blobstore.Store, d digest.Digest) (string, error) {
	if q, ok := store.(Quarantiner); ok {
		return q.Quarantine(ctx, d)
	}
	return "deleted", store.Delete(ctx, d)
}

// verify reads d's stored content at the pace given (nil: at once) and
// checks its digest and size: ErrDigestMismatch or ErrSizeMismatch when it
// is damaged.
func verify(ctx context.Context, store blobstore.Store, d digest.Digest, size int64, pace func(context.Context, int) error) error {
	b, err := store.Open(ctx, d)
	if err != nil {
		return err
	}
	defer b.Close()
	v := d.Verifier()
	var w io.Writer = v
	if pace != nil {
		w = pacedWriter{ctx: ctx, w: v, pace: pace}
	}
	n, err := io.Copy(w, b)
	if err != nil {
		return fmt.Errorf("verify blob %s: %w", d, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("verify blob %s: read %d bytes of %d: %w", d, n, size, blobstore.ErrSizeMismatch)
	}
	if !v.Verified() {
		return fmt.Errorf("verify blob %s: %w", d, blobstore.ErrDigestMismatch)
	}
	return nil
}

type pacedWriter struct {
	ctx  context.Context
	w    io.Writer
	pace func(context.Context, int) error
}

func (p pacedWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if err != nil {
		return n, err
	}
	return n, p.pace(p.ctx, n)
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Collectors export the scrub's passes and findings.
func (s *Scrub) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "regcache_scrub_passes_total", Help: "Background scrub passes begun (storage.scrub_interval)."},
			func() float64 { return float64(s.Status().Pass) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "regcache_scrub_damaged_total", Help: "Stored blobs the background scrub found damaged and set aside."},
			func() float64 { return float64(s.Status().DamagedTotal) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_scrub_last_pass_end_timestamp_seconds", Help: "When the last complete scrub pass ended (Unix time); 0 before the first."},
			func() float64 {
				if t := s.Status().LastPassEnd; !t.IsZero() {
					return float64(t.UnixNano()) / 1e9
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_scrub_enabled", Help: "1 while the background scrub is on (storage.scrub_interval above 0)."},
			func() float64 {
				if s.Status().Enabled {
					return 1
				}
				return 0
			})}
}

// Options adds, by option key, the scrub's pace in effect.
func (s *Scrub) Options(m map[string]string) {
	p := s.Pace()
	m["storage.scrub_interval"], m["storage.scrub_rate"] = p.Interval.String(), strconv.FormatInt(p.Rate, 10)
}
