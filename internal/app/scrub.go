package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/time/rate"

	"github.com/regcache/regcache/internal/blobstore"
)

// scrubChunk is what the scrub reads between two waits (the disk store's
// copy buffer), and so its limiter's burst.
const scrubChunk = 256 << 10

// scrubEmptyWait is how long the scrub waits for content when the store
// holds none.
const scrubEmptyWait = time.Hour

// maxScrubDamaged bounds the damaged digests the scrub remembers for
// `regcache cache stats`.
const maxScrubDamaged = 100

// scrubState is the background scrub's progress, for stats.
type scrubState struct {
	mu      sync.Mutex
	st      ScrubStatus
	cursor  digest.Digest
	sleepFn func(ctx context.Context, d time.Duration) bool // tests replace it
	// interval and rate are storage.scrub_interval and scrub_rate (set
	// by New; tests change them with setScrubPace).
	interval time.Duration
	rate     int64
}

// setScrubPace sets the scrub's pace.
func (a *App) setScrubPace(interval time.Duration, rate int64) {
	a.scrub.mu.Lock()
	a.scrub.interval, a.scrub.rate = interval, rate
	a.scrub.mu.Unlock()
}

func (a *App) scrubPace() (time.Duration, int64) {
	a.scrub.mu.Lock()
	defer a.scrub.mu.Unlock()
	return a.scrub.interval, a.scrub.rate
}

// ScrubStatus is what the background scrub has done.
type ScrubStatus struct {
	Enabled bool `json:"enabled"`
	// Interval is the time one pass over the store is paced to take, and
	// Rate the most bytes per second it reads.
	Interval time.Duration `json:"interval"`
	Rate     int64         `json:"rate"`
	// Pass counts passes begun; PassStarted is when the current one began.
	Pass        int       `json:"pass"`
	PassStarted time.Time `json:"passStarted,omitzero"`
	LastPassEnd time.Time `json:"lastPassEnd,omitzero"`
	// Checked and Bytes are blobs and bytes re-hashed in the current pass.
	Checked int64 `json:"checked"`
	Bytes   int64 `json:"bytes"`
	// Damaged are the digests found damaged (quarantined and dropped from
	// the index) since start, the last maxScrubDamaged of them; Missing
	// counts index entries whose file was gone.
	Damaged []digest.Digest `json:"damaged,omitempty"`
	Missing int64           `json:"missing"`
}

// ScrubStatus reports the background scrub's progress.
func (a *App) ScrubStatus() ScrubStatus {
	a.scrub.mu.Lock()
	defer a.scrub.mu.Unlock()
	st := a.scrub.st
	st.Enabled, st.Interval, st.Rate = a.scrub.interval > 0, a.scrub.interval, a.scrub.rate
	st.Damaged = append([]digest.Digest(nil), st.Damaged...)
	return st
}

// now is the app's clock: time.Now unless a test set another.
func (a *App) now() time.Time {
	if fn := a.clock.Load(); fn != nil {
		return (*fn)()
	}
	return time.Now()
}

// setClock sets the app's clock (tests).
func (a *App) setClock(fn func() time.Time) { a.clock.Store(&fn) }

// setSleep sets how the scrub waits (tests).
func (a *App) setSleep(fn func(context.Context, time.Duration) bool) {
	a.scrub.mu.Lock()
	a.scrub.sleepFn = fn
	a.scrub.mu.Unlock()
}

func (a *App) sleep(ctx context.Context, d time.Duration) bool {
	a.scrub.mu.Lock()
	fn := a.scrub.sleepFn
	a.scrub.mu.Unlock()
	if fn != nil {
		return fn(ctx, d)
	}
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

// scrubLoop re-hashes every stored blob, pass after pass, each pass paced
// to last storage.scrub_interval and never faster than storage.scrub_rate.
// A blob that fails is quarantined and dropped from the index, so the
// next request fetches it again. Off when the interval is 0.
func (a *App) scrubLoop(ctx context.Context, interval time.Duration) {
	if interval <= 0 || a.disk == nil || a.bolt == nil {
		return // off, or a shared store (S3): not scrubbed by replicas
	}
	for ctx.Err() == nil {
		start := a.now()
		n, err := a.scrubPass(ctx)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Error("background scrub", slog.Any("error", err))
			}
			if !a.sleep(ctx, time.Minute) {
				return
			}
			continue
		}
		wait := start.Add(interval).Sub(a.now())
		if n == 0 {
			wait = min(interval, scrubEmptyWait)
		}
		if !a.sleep(ctx, wait) {
			return
		}
	}
}

// scrubPass re-hashes every blob the index holds once, resuming after the
// last one checked if a pass was cut short, and returns how many it checked.
func (a *App) scrubPass(ctx context.Context) (int64, error) {
	total := a.totals().BlobBytes
	interval, maxRate := a.scrubPace()
	perSecond := float64(maxRate)
	if iv := interval.Seconds(); iv > 0 && total > 0 {
		perSecond = min(perSecond, max(float64(total)/iv, 1))
	}
	lim := rate.NewLimiter(rate.Limit(perSecond), scrubChunk)
	pace := func(ctx context.Context, n int) error {
		now := a.now()
		r := lim.ReserveN(now, min(n, scrubChunk))
		if !a.sleep(ctx, r.DelayFrom(now)) {
			return ctx.Err()
		}
		return nil
	}
	a.scrub.mu.Lock()
	if a.scrub.cursor == "" {
		a.scrub.st.Pass++
		a.scrub.st.PassStarted, a.scrub.st.Checked, a.scrub.st.Bytes = a.now(), 0, 0
	}
	cursor := a.scrub.cursor
	a.scrub.mu.Unlock()
	var checked int64
	for ctx.Err() == nil {
		d, e, ok, err := a.bolt.NextBlob(cursor)
		if err != nil {
			return checked, err
		}
		if !ok {
			break
		}
		cursor = d
		if err := a.scrubBlob(ctx, d, pace); err != nil {
			return checked, err
		}
		checked++
		a.scrub.mu.Lock()
		a.scrub.cursor = d
		a.scrub.st.Checked++
		a.scrub.st.Bytes += e.Size
		a.scrub.mu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		return checked, err
	}
	a.scrub.mu.Lock()
	a.scrub.cursor = ""
	a.scrub.st.LastPassEnd = a.now()
	st := a.scrub.st
	a.scrub.mu.Unlock()
	if st.Checked == 0 {
		return checked, nil
	}
	a.log.Info("background scrub pass done", slog.Int("pass", st.Pass), slog.Int64("blobs", st.Checked), slog.Int64("bytes", st.Bytes),
		slog.Duration("took", st.LastPassEnd.Sub(st.PassStarted).Round(time.Second)))
	return checked, nil
}

// scrubBlob re-hashes one blob; a damaged one is quarantined and dropped.
func (a *App) scrubBlob(ctx context.Context, d digest.Digest, pace func(context.Context, int) error) error {
	err := a.disk.VerifyPaced(ctx, d, pace)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, blobstore.ErrDigestMismatch):
		a.log.Error("the background scrub found a damaged cache file: quarantined and dropped, the next request fetches it again",
			slog.String("digest", d.String()), slog.String("quarantine", a.disk.QuarantineDir()))
		a.forgetDamaged(d)
		a.scrub.mu.Lock()
		a.scrub.st.Damaged = append(a.scrub.st.Damaged, d)
		if len(a.scrub.st.Damaged) > maxScrubDamaged {
			a.scrub.st.Damaged = a.scrub.st.Damaged[1:]
		}
		a.scrub.mu.Unlock()
		return nil
	case errors.Is(err, blobstore.ErrNotFound):
		if _, serr := a.store.Stat(ctx, d); !errors.Is(serr, blobstore.ErrNotFound) {
			return nil // committed again meanwhile
		}
		a.log.Warn("the background scrub found an index entry without its file: dropped", slog.String("digest", d.String()))
		a.forgetDamaged(d)
		a.scrub.mu.Lock()
		a.scrub.st.Missing++
		a.scrub.mu.Unlock()
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	a.log.Warn("background scrub: cannot read a cache file", slog.String("digest", d.String()), slog.Any("error", err))
	return nil
}

// forgetDamaged drops a damaged or lost file's index entry and anything
// held of it in memory.
func (a *App) forgetDamaged(d digest.Digest) {
	if err := a.index.DeleteBlob(d); err != nil {
		a.log.Error("drop a damaged file's index entry", slog.String("digest", d.String()), slog.Any("error", err))
	}
	if a.content != nil {
		a.content.Forget(d)
	}
}
