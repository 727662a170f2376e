package app

import (
	"context"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore/s3"
	"github.com/regcache/regcache/internal/cluster"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/storage"
)

// clusterOptions make the content service fetch once across the cluster,
// and send clients to S3 for hits with storage.s3.redirect.
func clusterOptions(cfg config.Config, store storage.Store, cl *cluster.Cluster) []mirror.Option {
	var opts []mirror.Option
	if s, ok := store.(*s3.Store); ok && cfg.Storage.S3.Redirect {
		opts = append(opts, mirror.WithRedirect(func(ctx context.Context, d digest.Digest) (string, error) {
			return s.RedirectURL(ctx, d, redirectTTL)
		}))
	}
	if cl == nil {
		return opts
	}
	return append(opts,
		mirror.WithBlobSource(mirror.BlobSource(cl.Source)),
		mirror.WithFlightLock(func(ctx context.Context, key string, fn func()) { cl.Once(ctx, "flight:"+key, time.Minute, fn) }))
}

// redirectTTL is how long a presigned redirect of a blob hit is valid: long
// enough to start the download, short enough not to be shared.
const redirectTTL = 5 * time.Minute

// withPeers mounts the cluster's internal endpoint beside the registry API.
func (a *App) withPeers(api http.Handler) http.Handler {
	if a.cluster == nil {
		return api
	}
	mux := http.NewServeMux()
	mux.Handle(cluster.PeerPath, a.cluster.Handler(a.content, func(d digest.Digest) int64 {
		var most int64
		for _, p := range a.fills.Progress() {
			if p.Digest == d {
				most = max(most, p.Written)
			}
		}
		return most
	}))
	mux.Handle("/", api)
	return mux
}
