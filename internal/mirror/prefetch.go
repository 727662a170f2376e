package mirror

import (
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// startPrefetch starts fills for the config and layers of an image
// manifest that the store lacks, at most s.prefetchSem at a time, so the
// upstream link is busy while the client asks for layers a few at a time.
func (s *Service) startPrefetch(rt route, m *Manifest) {
	if s.mem.isComplete(m.Digest) {
		return // every blob was stored when last looked at
	}
	s.rememberSizes(rt, m)
	var todo []v1.Descriptor
	for _, b := range blobsOf(m.Body) {
		if _, err := s.store.Stat(s.ctx, b.Digest); err != nil {
			todo = append(todo, b)
		}
	}
	if len(todo) == 0 {
		s.mem.markComplete(m.Digest)
		return
	}
	s.goBackground(func() {
		for _, b := range todo {
			select {
			case s.prefetchSem <- struct{}{}:
			case <-s.ctx.Done():
				return
			}
			done := s.fills.StartFrom(rt.up.Name, b.Digest, b.Size, s.sourceFor(rt, b.Digest, b.Size, false), s.segments(rt, b.Digest)...)
			if done == nil {
				<-s.prefetchSem
				continue
			}
			s.wg.Add(1) // inside a counted goroutine: safe against Close's Wait
			go func() {
				defer s.wg.Done()
				select {
				case <-done:
				case <-s.ctx.Done():
				}
				<-s.prefetchSem
			}()
		}
	})
}
