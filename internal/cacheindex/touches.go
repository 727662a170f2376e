package cacheindex

import (
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

	stop, done chan struct{}
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

// Start calls flush every period until Stop, passing its errors to warn.
func (t *Touches) Start(every time.Duration, flush func() error, warn func(error)) {
	t.stop, t.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(t.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tick.C:
				if err := flush(); err != nil {
					warn(err)
				}
			}
		}
	}()
}

// Stop ends what Start began and waits for a flush in progress.
func (t *Touches) Stop() {
	close(t.stop)
	<-t.done
}
