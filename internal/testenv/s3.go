package testenv

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3ServerVersion is the S3 engine the tests run: versitygw, a real S3
// gateway over a POSIX directory (Apache-2.0), built from the Go module
// proxy. .ci/run builds it once into S3ServerCache.
const S3ServerVersion = "github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// S3ServerCache is where .ci/run keeps the built S3 engine, outside the
// clone, so it is built once per machine.
const S3ServerCache = "/var/cache/regcache-ci/bin/versitygw"

// S3 is a running S3 engine on loopback with one empty bucket.
type S3 struct {
	// Endpoint is http://127.0.0.1:port.
	Endpoint string
	// Host is 127.0.0.1:port.
	Host      string
	Bucket    string
	Region    string
	AccessKey string
	SecretKey string
	// Dir is the directory the objects live in (one directory per bucket).
	Dir     string
	LogFile string
	p       *engineProc
}

// s3Server finds the engine: $REGCACHE_S3_SERVER, the CI cache, or PATH.
func s3Server(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("REGCACHE_S3_SERVER"); p != "" {
		return p
	}
	if _, err := os.Stat(S3ServerCache); err == nil {
		return S3ServerCache
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	msg := "S3 engine versitygw not found: run .ci/run, or build it with GOBIN=" + filepath.Dir(S3ServerCache) +
		" GOFLAGS=-p=1 nice -n 19 go install " + S3ServerVersion
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg + "; skipping")
	return ""
}

// NewS3 starts versitygw on a free loopback port with a private directory
// and creates a bucket. It skips the test when the engine is not built
// (fails when CI=true); the server is killed at cleanup.
func NewS3(t testing.TB) *S3 {
	t.Helper()
	bin := s3Server(t)
	dir := t.TempDir()
	s := &S3{Bucket: "regcache", Region: "us-east-1", AccessKey: "regcache" + randomHex(4), SecretKey: randomHex(16),
		Dir: filepath.Join(dir, "objects"), LogFile: filepath.Join(dir, "versitygw.log")}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.Host = "127.0.0.1:" + strconv.Itoa(FreePort(t))
	s.Endpoint = "http://" + s.Host
	s.p = &engineProc{t: t, name: "versitygw", logFile: s.LogFile,
		command: func() *exec.Cmd {
			c := exec.Command(bin, "--port", s.Host, "--region", s.Region, "posix", s.Dir)
			c.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
			return c
		},
		ready: func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		}}
	s.p.cleanup()
	s.p.Start()
	c := s.Client(t)
	if err := c.MakeBucket(t.Context(), s.Bucket, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return s
}

// Client is an S3 client of the engine, for tests that look at the
// bucket directly.
func (s *S3) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Host, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region: s.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Stop kills the server (objects stay on disk); Start runs it again on the
// same port and directory.
func (s *S3) Stop()  { s.p.Stop() }
func (s *S3) Start() { s.p.Start() }

// PID is the server's process id.
func (s *S3) PID() int { return s.p.PID() }
