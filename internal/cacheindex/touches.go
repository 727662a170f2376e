package cacheindex

import (
	"context"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Touches holds access times in memory between flushes, so no request
// writes to the index: every Backend keeps them this way. The zero value is
// ready to use.
type Touches struct {
	mu sync.Mutex
	m  map[digest.Digest]time.Time

	stop context.CancelFunc
	done chan struct{}
}

// Add records an access at to each digest.
func (t *Touches) Add(at time.Time, ds ...digest.Digest) {
	t.mu.Lock()
	if t.m == nil {
		t.m = map[digest.Digest]time.Time{}
	}
	for _, d := range ds {
		t.m[d] = at
	}
	t.mu.Unlock()
}

// Take returns the pending accesses and forgets them.
func (t *Touches) Take() map[digest.Digest]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	batch := t.m
	t.m = nil
	return batch
}

// Keep puts back a batch a flush could not write, so the next flush tries
// again; a later access recorded meanwhile wins.
func (t *Touches) Keep(batch map[digest.Digest]time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[digest.Digest]time.Time{}
	}
	for d, at := range batch {
		if cur, ok := t.m[d]; !ok || at.After(cur) {
			t.m[d] = at
		}
	}
}

// Start calls flush every period until Stop. Each pass gets Start's own
// background ctx (no request asks for it), which Stop cancels: a pass held
// up by a shared index ends then, its batch kept for the last flush of
// Close. A pass's error goes to warn.
func (t *Touches) Start(every time.Duration, flush func(context.Context) error, warn func(error)) {
	background, cancel := context.WithCancel(context.Background())
	t.stop, t.done = cancel, make(chan struct{})
	go func() {
		defer close(t.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-background.Done():
				return
			case <-tick.C:
				if err := flush(background); err != nil && background.Err() == nil {
					warn(err)
				}
			}
		}
	}()
}

// Stop ends what Start began and waits for a flush in progress.
func (t *Touches) Stop() {
	t.stop()
	<-t.done
}
