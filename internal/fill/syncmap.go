package fill

import (
	"sync"
	"sync/atomic"
)

// syncMap counts per key; keys are few and long-lived (upstream names).
type syncMap struct{ m sync.Map }

func (s *syncMap) add(key string, n int64) {
	v, ok := s.m.Load(key)
	if !ok {
		v, _ = s.m.LoadOrStore(key, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(n)
}

func (s *syncMap) snapshot() map[string]int64 {
	out := map[string]int64{}
	s.m.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}
