package config

import (
	"errors"
	"fmt"
	"net/url"
)

// validateCluster checks storage.s3 and cluster together: replicas share
// content only through S3, and find and trust one another only with an
// advertised URL and a secret.
func (c Config) validateCluster() []error {
	var errs []error
	add := func(key string, err error) { errs = append(errs, fmt.Errorf("config: %s: %w", key, err)) }
	s3 := c.Storage.S3
	if s3.Bucket != "" || s3.Endpoint != "" {
		if s3.Bucket == "" {
			add("storage.s3.bucket", errors.New("storage.s3.endpoint is set but no bucket: name the bucket"))
		}
		if u, err := url.Parse(s3.Endpoint); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			add("storage.s3.endpoint", fmt.Errorf("%q is not an http(s)://host[:port] URL", s3.Endpoint))
		}
	}
	if c.Storage.LocalCacheSize < 0 {
		add("storage.local_cache_size", fmt.Errorf("must not be negative, got %d", c.Storage.LocalCacheSize))
	}
	cl := c.Cluster
	if cl.Redis == "" {
		if cl.Advertise != "" || cl.Secret != "" {
			add("cluster.redis", errors.New("cluster.advertise or cluster.secret is set but cluster.redis is not: set the replicas' Redis"))
		}
		return errs
	}
	if u, err := url.Parse(cl.Redis); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		add("cluster.redis", errors.New("want redis://[:password@]host:port/db, or rediss:// for TLS"))
	}
	if s3.Bucket == "" {
		add("storage.s3.bucket", errors.New("cluster.redis is set: replicas share their content through S3, set storage.s3"))
	}
	if u, err := url.Parse(cl.Advertise); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		add("cluster.advertise", fmt.Errorf("%q: want the URL other replicas reach this one at, e.g. http://10.0.0.5:5000", cl.Advertise))
	}
	if len(cl.Secret) < 16 {
		add("cluster.secret", errors.New("set a shared secret of at least 16 characters (REGCACHE_CLUSTER_SECRET)"))
	}
	return errs
}
