package app

import (
	"context"

	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/mirror"
)

// adminSource is the running mirror as the admin surface reads it.
type adminSource App

var _ admin.Source = (*adminSource)(nil)

func (s *adminSource) app() *App { return (*App)(s) }

// Config is the configuration in effect.
func (s *adminSource) Config() config.Config { return s.app().config() }

// Totals are the index's totals.
func (s *adminSource) Totals() cacheindex.Totals { return s.evictor.Totals() }

// MaxSize is storage.max_size in effect.
func (s *adminSource) MaxSize() int64 { return s.evictor.MaxSize() }

// Settings are the options in effect, as the running parts hold them.
func (s *adminSource) Settings() map[string]string { return s.app().settingsInEffect() }

// Store is the content store.
func (s *adminSource) Store() admin.Store { return s.store }

// LocalStore reports that content is on the local disk (not S3).
func (s *adminSource) LocalStore() bool {
	_, ok := s.store.(*disk.Store)
	return ok
}

// Upstreams are the upstreams with the content service's view of each.
func (s *adminSource) Upstreams() []admin.Upstream {
	out := make([]admin.Upstream, 0, len(s.upstreams))
	for _, u := range s.upstreams {
		au := admin.Upstream{Name: u.Name, Client: u.Client}
		if s.content != nil {
			au.Reserve = s.content.Reserve(u)
			if len(u.Fallback) > 0 {
				fb := s.content.Fallback(u)
				au.Fallback = &fb
			}
		}
		out = append(out, au)
	}
	return out
}

// Fills are the upstream fetches.
func (s *adminSource) Fills() admin.Fills { return s.fills }

// Pinned is what the last eviction pass found of pinned images.
func (s *adminSource) Pinned() (int64, bool) { return s.evictor.Pinned() }

// PolicyCheck says what the pull policy decides for an image, without a
// pull.
func (s *adminSource) PolicyCheck(ctx context.Context, image string) (mirror.PolicyAnswer, error) {
	return s.content.PolicyCheckImage(ctx, image)
}

// Policy is the pull policy's mode and recent denials (nil: no policy).
func (s *adminSource) Policy() *admin.PolicyStatus { return s.app().policyStatus() }

// Cluster is this replica's view of its cluster; nil on one node.
func (s *adminSource) Cluster() *admin.ClusterStatus {
	if s.cluster == nil {
		return nil
	}
	v := s.cluster.View()
	return &admin.ClusterStatus{Self: s.cluster.Self(), Live: s.cluster.Live(), Trusted: v.Trusted, Leases: v.Leases}
}
