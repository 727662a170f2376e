// Package s3 is a blobstore.Store on an S3-compatible object store, for
// replicas that share their content.
//
// Bytes being written go to a local spool file (a disk.Store writer: it
// hashes while writing and can be read back while it grows, so clients
// stream a fill from the first byte) and, part by part as they land, into
// a multipart upload under the digest's key. The upload is completed only
// after the spool's bytes hashed to the digest, so no reader of the bucket
// ever sees partial or wrong bytes; a failed or cancelled write aborts it.
// Blobs smaller than one part are put in one request after verification.
//
// With a local tier (WithLocalTier) committed spool files are kept on the
// replica's disk, bounded by size and evicted least recently used first,
// and hits are served from there (by sendfile) before asking S3.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/disk"
)

// Config says where the bucket is. AccessKey and SecretKey empty: the
// AWS_* (then MINIO_*) environment variables are used.
type Config struct {
	// Endpoint is the S3 API's URL (https://s3.eu-west-1.amazonaws.com,
	// http://127.0.0.1:9000).
	Endpoint  string
	Bucket    string
	Region    string
	Prefix    string // key prefix inside the bucket ("" or "regcache/")
	AccessKey string
	SecretKey string
	// PathStyle addresses the bucket as endpoint/bucket/key rather than
	// bucket.endpoint/key (most non-AWS engines want this).
	PathStyle bool
}

// Store is a blobstore.Store on S3.
type Store struct {
	c        *minio.Client
	core     minio.Core
	bucket   string
	prefix   string
	spool    *disk.Store
	partSize int64
	log      *slog.Logger
	endpoint string // for errors: where S3 was not reached
	// down: the last lookup found S3 unreachable, at failedAt (unix ns);
	// probing: a lookup is asking it again (statObject).
	// unreachableLogged is when that was last logged.
	down, probing               atomic.Bool
	failedAt, unreachableLogged atomic.Int64

	tier      bool
	tierMax   int64
	tierBytes atomic.Int64
	trimMu    sync.Mutex

	copyMu  sync.Mutex
	copying map[digest.Digest]bool // blobs being copied from S3 into the tier
	copies  sync.WaitGroup
}

var _ blobstore.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// WithPartSize sets the multipart upload's part size (default 16 MiB; S3
// allows no part but the last under 5 MiB).
func WithPartSize(n int64) Option { return func(s *Store) { s.partSize = max(n, 5<<20) } }

// WithLocalTier keeps committed blobs in the spool directory too, up to
// maxBytes (least recently used evicted first), and serves hits from there.
func WithLocalTier(maxBytes int64) Option {
	return func(s *Store) { s.tier, s.tierMax = maxBytes > 0, maxBytes }
}

// New connects to the bucket (checking it exists) and spools writes under
// spoolDir, a directory on the replica's own disk.
func New(ctx context.Context, cfg Config, spoolDir string, opts ...Option) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("storage.s3.bucket is empty: name the bucket")
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("storage.s3.endpoint %q: want http(s)://host[:port]", cfg.Endpoint)
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.EnvMinio{}})
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(u.Host, &minio.Options{Creds: creds, Secure: u.Scheme == "https", Region: cfg.Region, BucketLookup: lookup})
	if err != nil {
		return nil, fmt.Errorf("storage.s3: %w", err)
	}
	spool, err := disk.New(spoolDir)
	if err != nil {
		return nil, err
	}
	s := &Store{c: c, core: minio.Core{Client: c}, bucket: cfg.Bucket, prefix: cfg.Prefix, spool: spool,
		partSize: 16 << 20, log: slog.New(slog.DiscardHandler), copying: map[digest.Digest]bool{},
		endpoint: cfg.Endpoint}
	for _, o := range opts {
		o(s)
	}
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("storage.s3: reach bucket %s at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	if !ok {
		return nil, fmt.Errorf("storage.s3: bucket %s does not exist at %s: create it", cfg.Bucket, cfg.Endpoint)
	}
	if !s.tier {
		// Without a tier the spool keeps nothing committed.
		_ = spool.Walk(ctx, func(d digest.Digest, _ int64) error { return spool.Delete(ctx, d) })
	} else {
		var n int64
		_ = spool.Walk(ctx, func(_ digest.Digest, size int64) error { n += size; return nil })
		s.tierBytes.Store(n)
	}
	return s, nil
}

// key is the object key of a digest; digests are validated, so no string
// escapes the prefix.
func (s *Store) key(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("blob key: %w", err)
	}
	enc := d.Encoded()
	return s.prefix + path.Join("blobs", string(d.Algorithm()), enc[:2], enc), nil
}

// notFound reports whether err says the object is not there. A missing
// bucket is not a missing object: it is a configuration to fix, and is
// returned as the error it is.
func notFound(err error) bool {
	r := minio.ToErrorResponse(err)
	switch r.Code {
	case "NoSuchKey", "NotFound":
		return true
	case "NoSuchBucket", "NoSuchUpload":
		return false
	}
	return r.Code == "" && r.StatusCode == http.StatusNotFound // a HEAD's 404 has no body to name it
}

// Stat implements blobstore.Store.
func (s *Store) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	if s.tier {
		if n, err := s.spool.Stat(ctx, d); err == nil {
			return n, nil
		}
	}
	k, err := s.key(d)
	if err != nil {
		return 0, err
	}
	info, err := s.statObject(ctx, k)
	if notFound(err) {
		return 0, blobstore.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob %s in S3: %w", d, err)
	}
	return info.Size, nil
}

// lookupTimeout bounds a lookup of an object (its HEAD, with the S3
// client's retries): a request for a blob waits this long at most for an
// S3 that is down or unreachable, then is answered that S3 is unreachable
// (blobstore.ErrUnavailable), rather than after the client's ten retries
// (8 to 30 s). A HEAD answers in milliseconds when S3 is up.
const lookupTimeout = 2 * time.Second

// probeGap is how often, at most, a lookup asks an S3 found unreachable
// again (statObject).
const probeGap = time.Second

// statObject is a HEAD of the object bounded by lookupTimeout. An S3 that
// does not answer in time, or answers 5xx, is blobstore.ErrUnavailable;
// the caller's own cancellation is returned as it is.
//
// Once a lookup found S3 unreachable, one lookup at a time asks it again,
// at most once a second (probeGap), while the others answer
// ErrUnavailable at once: during an outage most requests fail in
// microseconds rather than lookupTimeout, and the first lookup that finds
// S3 answering ends the outage for all.
func (s *Store) statObject(ctx context.Context, key string) (minio.ObjectInfo, error) {
	if s.down.Load() {
		if time.Since(time.Unix(0, s.failedAt.Load())) < probeGap || !s.probing.CompareAndSwap(false, true) {
			return minio.ObjectInfo{}, fmt.Errorf("%w (S3 at %s did not answer the last lookup; it is asked again once a second)", blobstore.ErrUnavailable, s.endpoint)
		}
		defer s.probing.Store(false)
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	info, err := s.c.StatObject(lctx, s.bucket, key, minio.StatObjectOptions{})
	if err == nil || notFound(err) {
		if s.down.Swap(false) {
			s.log.Info("S3 answers again")
		}
		return info, err
	}
	if ctx.Err() != nil {
		return info, err
	}
	if r := minio.ToErrorResponse(err); lctx.Err() != nil || r.StatusCode == 0 || r.StatusCode >= 500 {
		err = fmt.Errorf("%w (S3 at %s did not answer within %s: %w)", blobstore.ErrUnavailable, s.endpoint, lookupTimeout, err)
		s.failedAt.Store(time.Now().UnixNano())
		s.down.Store(true)
		if now := time.Now().UnixNano(); now-s.unreachableLogged.Load() > int64(10*time.Second) {
			s.unreachableLogged.Store(now) // once in 10 s while it lasts
			s.log.Error("S3 is unreachable: blob requests it would answer are answered 503", slog.Any("error", err))
		}
	}
	return info, err
}

// Open implements blobstore.Store: from the local tier when it has the
// blob, else a reader of the object (ranged GETs as it is read or seeked).
func (s *Store) Open(ctx context.Context, d digest.Digest) (blobstore.Blob, error) {
	if s.tier {
		if b, err := s.spool.Open(ctx, d); err == nil {
			if f, ok := b.(interface{ OSFile() *os.File }); ok {
				now := time.Now()
				_ = os.Chtimes(f.OSFile().Name(), now, now) // the tier's LRU order
			}
			return b, nil
		}
	}
	k, err := s.key(d)
	if err != nil {
		return nil, err
	}
	info, err := s.statObject(ctx, k)
	if notFound(err) {
		return nil, blobstore.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s in S3: %w", d, err)
	}
	if s.tier {
		s.copyToTier(d, k, info.Size)
	}
	// The object is read with the context of the caller that opened it
	// only for this first request; reads are bounded by the S3 client's
	// own timeouts.
	obj, err := s.c.GetObject(context.WithoutCancel(ctx), s.bucket, k, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("open blob %s in S3: %w", d, err)
	}
	return &object{Object: obj, size: info.Size}, nil
}

// copyToTier copies a blob committed in S3 (by another replica) into the
// local tier in the background, once at a time per digest, so later hits
// on this replica are served from its disk. The copy is streamed and
// verified like any write; a failed one leaves nothing.
//
// At most maxTierCopies run at once (a hit meanwhile reads S3, and a
// later one copies), and a blob larger than a quarter of the tier is not
// copied: it would push out most of what the tier holds.
func (s *Store) copyToTier(d digest.Digest, key string, size int64) {
	s.copyMu.Lock()
	if s.copying[d] || len(s.copying) >= maxTierCopies || size > s.tierMax/4 {
		s.copyMu.Unlock()
		return
	}
	s.copying[d] = true
	s.copies.Add(1)
	s.copyMu.Unlock()
	go func() {
		defer s.copies.Done()
		defer func() {
			s.copyMu.Lock()
			delete(s.copying, d)
			s.copyMu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		fail := func(err error) {
			s.log.Warn("copy of a blob from S3 into the local tier failed", slog.String("digest", d.String()), slog.Any("error", err))
		}
		obj, err := s.c.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
		if err != nil {
			fail(err)
			return
		}
		defer obj.Close()
		w, err := s.spool.Create(ctx, d)
		if err != nil {
			fail(err)
			return
		}
		defer w.Close()
		if _, err := io.Copy(w, obj); err != nil {
			fail(err)
			return
		}
		if err := w.Commit(ctx, size); err != nil {
			s.log.Warn("copy of a blob from S3 into the local tier failed", slog.String("digest", d.String()), slog.Any("error", err))
			return
		}
		s.tierBytes.Add(size)
		s.trimTier(ctx)
	}()
}

// maxTierCopies bounds the background copies into the local tier.
const maxTierCopies = 4

// WaitCopies waits for background copies into the local tier (tests,
// shutdown).
func (s *Store) WaitCopies() { s.copies.Wait() }

// object is committed content in S3.
type object struct {
	*minio.Object
	size int64
}

func (o *object) Size() int64 { return o.size }

// RedirectURL is a presigned GET of the blob's object valid for expiry, for
// clients sent to S3 directly (storage.s3.redirect).
func (s *Store) RedirectURL(ctx context.Context, d digest.Digest, expiry time.Duration) (string, error) {
	k, err := s.key(d)
	if err != nil {
		return "", err
	}
	u, err := s.c.PresignedGetObject(ctx, s.bucket, k, expiry, nil)
	if err != nil {
		return "", fmt.Errorf("presign blob %s: %w", d, err)
	}
	return u.String(), nil
}

// Delete implements blobstore.Store.
func (s *Store) Delete(ctx context.Context, d digest.Digest) error {
	k, err := s.key(d)
	if err != nil {
		return err
	}
	if s.tier {
		if n, err := s.spool.Stat(ctx, d); err == nil && s.spool.Delete(ctx, d) == nil {
			s.tierBytes.Add(-n)
		}
	}
	if err := s.c.RemoveObject(ctx, s.bucket, k, minio.RemoveObjectOptions{}); err != nil && !notFound(err) {
		return fmt.Errorf("delete blob %s in S3: %w", d, err)
	}
	return nil
}

// Walk implements blobstore.Store over the bucket's objects; keys that are
// not a digest's are skipped.
func (s *Store) Walk(ctx context.Context, fn func(digest.Digest, int64) error) error {
	root := s.prefix + "blobs/"
	for obj := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: root, Recursive: true}) {
		if obj.Err != nil {
			return fmt.Errorf("list blobs in S3: %w", obj.Err)
		}
		parts := strings.Split(strings.TrimPrefix(obj.Key, root), "/")
		if len(parts) != 3 {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
		if d.Validate() != nil {
			continue
		}
		if err := fn(d, obj.Size); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Available is the free space of the spool's disk, which every fill
// passes through.
func (s *Store) Available() (int64, error) { return s.spool.Available() }

// Create implements blobstore.Store.
func (s *Store) Create(ctx context.Context, d digest.Digest) (blobstore.Writer, error) {
	k, err := s.key(d)
	if err != nil {
		return nil, err
	}
	local, err := s.spool.Create(ctx, d)
	if err != nil {
		return nil, err
	}
	return &writer{s: s, d: d, key: k, local: local, parts: make(chan int64, 2)}, nil
}

// trimTier evicts least recently used blobs of the local tier until it is
// under 90 % of its bound.
func (s *Store) trimTier(ctx context.Context) {
	if !s.tier || s.tierBytes.Load() <= s.tierMax {
		return
	}
	s.trimMu.Lock()
	defer s.trimMu.Unlock()
	if s.tierBytes.Load() <= s.tierMax { // trimmed meanwhile
		return
	}
	type entry struct {
		d    digest.Digest
		size int64
		at   time.Time
	}
	var all []entry
	var sum int64
	_ = s.spool.Walk(ctx, func(d digest.Digest, size int64) error {
		sum += size
		e := entry{d: d, size: size}
		if b, err := s.spool.Open(ctx, d); err == nil {
			if f, ok := b.(interface{ OSFile() *os.File }); ok {
				if fi, err := f.OSFile().Stat(); err == nil {
					e.at = fi.ModTime()
				}
			}
			b.Close()
		}
		all = append(all, e)
		return nil
	})
	// The running count is recounted from the files: a background copy and
	// a writer committing the same digest, or a Delete and a trim removing
	// the same file, each count once too often.
	s.tierBytes.Store(sum)
	slices.SortFunc(all, func(a, b entry) int { return a.at.Compare(b.at) })
	for _, e := range all {
		if s.tierBytes.Load() <= s.tierMax*9/10 {
			break
		}
		if s.spool.Delete(ctx, e.d) == nil {
			s.tierBytes.Add(-e.size)
		}
	}
}

var _ blobstore.WriterAt = (*writer)(nil)

// writer spools to local disk and uploads parts to S3 as they fill.
type writer struct {
	s     *Store
	d     digest.Digest
	key   string
	local blobstore.Writer

	mu       sync.Mutex
	queued   int64      // bytes handed to the uploader
	parts    chan int64 // part ends, in order; closed when no more come
	started  bool       // the uploader runs
	finished chan struct{}
	// stop cancels the uploader's calls to S3: an abort does not wait for
	// the retries of a part that S3 is slow to take.
	stop     context.CancelFunc
	upCtx    context.Context
	uploadID string
	done     []minio.CompletePart
	upErr    error
	closed   bool
	// deferred: another writer (a replica streaming the same digest from
	// upstream) was already uploading this key, so this one uploads
	// nothing while it writes and, at Commit, only if that one's object
	// is not there.
	deferred bool
}

func (w *writer) Write(p []byte) (int, error) {
	n, err := w.local.Write(p)
	if err != nil {
		return n, err
	}
	return n, w.queueParts()
}

// WriteAt lands bytes in the spool ahead of those written in order
// (blobstore.WriterAt): nothing is uploaded until Advance moves over them.
func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	wa, ok := w.local.(blobstore.WriterAt)
	if !ok {
		return 0, errors.New("the spool takes bytes in order only")
	}
	return wa.WriteAt(p, off)
}

// Advance hashes the next n bytes of the spool, which WriteAt put there,
// and uploads the parts they complete, as Write would have.
func (w *writer) Advance(n int64) error {
	wa, ok := w.local.(blobstore.WriterAt)
	if !ok {
		return errors.New("the spool takes bytes in order only")
	}
	if err := wa.Advance(n); err != nil {
		return err
	}
	return w.queueParts()
}

// queueParts hands the uploader every part the spool's in-order bytes
// complete.
func (w *writer) queueParts() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.upErr != nil {
		return fmt.Errorf("upload blob %s to S3: %w", w.d, w.upErr)
	}
	for w.local.Written()-w.queued >= w.s.partSize {
		w.startLocked()
		w.queued += w.s.partSize
		end := w.queued
		w.mu.Unlock()
		w.parts <- end // bounded: a slow S3 slows the fill, memory stays flat
		w.mu.Lock()
	}
	return nil
}

// startLocked starts the multipart upload and its uploader goroutine once.
func (w *writer) startLocked() {
	if w.started {
		return
	}
	w.started = true
	w.finished = make(chan struct{})
	w.upCtx, w.stop = context.WithCancel(context.Background())
	go w.upload()
}

// upload creates the multipart upload and puts each part, read back from
// the spool file, as its end is queued.
func (w *writer) upload() {
	defer close(w.finished)
	defer w.stop() // set before the goroutine started
	ctx := w.upCtx
	if w.othersUploading(ctx) {
		w.mu.Lock()
		w.deferred = true
		w.mu.Unlock()
		for range w.parts { // drain: the other upload is the one that counts
		}
		return
	}
	// The create is not cancelled with the parts: an upload S3 created
	// while its answer was cut off would be one nobody knows to abort.
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	id, err := w.s.core.NewMultipartUpload(cctx, w.s.bucket, w.key, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	cancel()
	w.mu.Lock()
	w.uploadID, w.upErr = id, err
	w.mu.Unlock()
	var start int64
	for end := range w.parts {
		if err != nil {
			continue // drain
		}
		n := len(w.done) + 1
		var part minio.ObjectPart
		part, err = w.s.core.PutObjectPart(ctx, w.s.bucket, w.key, id, n,
			io.NewSectionReader(w.local, start, end-start), end-start, minio.PutObjectPartOptions{})
		w.mu.Lock()
		if err != nil {
			w.upErr = err
		} else {
			w.done = append(w.done, minio.CompletePart{PartNumber: n, ETag: part.ETag})
		}
		w.mu.Unlock()
		start = end
	}
}

// othersUploading reports whether a multipart upload of this key runs
// already (young enough to be a live fill's).
func (w *writer) othersUploading(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := w.s.core.ListMultipartUploads(ctx, w.s.bucket, w.key, "", "", "", 10)
	if err != nil {
		return false
	}
	for _, u := range res.Uploads {
		if u.Key == w.key && time.Since(u.Initiated) < time.Hour {
			return true
		}
	}
	return false
}

func (w *writer) ReadAt(p []byte, off int64) (int, error) { return w.local.ReadAt(p, off) }
func (w *writer) Written() int64                          { return w.local.Written() }

// Reopen is the spool file's, for sendfile(2) of a growing blob.
func (w *writer) Reopen() (*os.File, error) {
	ro, ok := w.local.(interface{ Reopen() (*os.File, error) })
	if !ok {
		return nil, errors.New("the spool cannot reopen a growing file")
	}
	return ro.Reopen()
}

func (w *writer) Verify(size int64) error {
	if err := w.local.Verify(size); err != nil {
		w.abort()
		return err
	}
	return nil
}

// Commit verifies the spool, then makes the object visible under the
// digest's key: the multipart upload completed with its last part, or
// for a small blob one PUT. An object another replica committed first is
// kept (same digest, same bytes) and this upload dropped.
func (w *writer) Commit(ctx context.Context, size int64) error {
	if err := w.Verify(size); err != nil {
		return err
	}
	total := w.local.Written()
	if info, err := w.s.c.StatObject(ctx, w.s.bucket, w.key, minio.StatObjectOptions{}); err == nil && info.Size == total {
		w.abort()
		return w.keepLocal(ctx, total)
	}
	w.mu.Lock()
	started := w.started
	if started && total > w.queued {
		w.queued = total
		w.mu.Unlock()
		w.parts <- total
		w.mu.Lock()
	}
	w.mu.Unlock()
	if !started {
		_, err := w.s.c.PutObject(ctx, w.s.bucket, w.key, io.NewSectionReader(w.local, 0, total), total,
			minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true})
		if err != nil {
			w.local.Cancel()
			return fmt.Errorf("commit blob %s to S3: %w", w.d, err)
		}
		return w.keepLocal(ctx, total)
	}
	w.closeParts()
	<-w.finished
	w.mu.Lock()
	id, parts, upErr, deferred := w.uploadID, w.done, w.upErr, w.deferred
	w.mu.Unlock()
	if deferred {
		// The other writer's object is not there (checked above): it
		// failed or died. Upload ours now, from the spool, one part at a
		// time.
		_, err := w.s.c.PutObject(ctx, w.s.bucket, w.key, io.NewSectionReader(w.local, 0, total), total,
			minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: uint64(w.s.partSize), NumThreads: 1})
		if err != nil {
			w.local.Cancel()
			return fmt.Errorf("commit blob %s to S3: %w", w.d, err)
		}
		return w.keepLocal(ctx, total)
	}
	if upErr != nil {
		w.abort()
		return fmt.Errorf("commit blob %s to S3: %w", w.d, upErr)
	}
	if _, err := w.s.core.CompleteMultipartUpload(ctx, w.s.bucket, w.key, id, parts, minio.PutObjectOptions{}); err != nil {
		// An answer lost after S3 completed the upload: the object is
		// there, whole (a multipart object appears only complete).
		if info, serr := w.s.c.StatObject(ctx, w.s.bucket, w.key, minio.StatObjectOptions{}); serr == nil && info.Size == total {
			w.mu.Lock()
			w.uploadID = ""
			w.mu.Unlock()
			return w.keepLocal(ctx, total)
		}
		w.abort()
		return fmt.Errorf("commit blob %s to S3: %w", w.d, err)
	}
	w.mu.Lock()
	w.uploadID = "" // completed: nothing to abort
	w.mu.Unlock()
	return w.keepLocal(ctx, total)
}

// keepLocal moves the verified spool file into the local tier, or drops it.
func (w *writer) keepLocal(ctx context.Context, size int64) error {
	if !w.s.tier {
		// The blob is in S3: removing the spool copy is housekeeping, and
		// its failure is not the commit's (disk.New removes what is left).
		if err := w.local.Cancel(); err != nil {
			w.s.log.Warn("remove a spooled blob", slog.String("digest", w.d.String()), slog.Any("error", err))
		}
		return nil
	}
	if err := w.local.Commit(ctx, size); err != nil {
		w.s.log.Warn("blob committed to S3 but not kept in the local tier", slog.String("digest", w.d.String()), slog.Any("error", err))
		return nil
	}
	w.s.tierBytes.Add(size)
	go w.s.trimTier(context.WithoutCancel(ctx))
	return nil
}

func (w *writer) closeParts() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		close(w.parts)
	}
}

// abort stops the uploader and aborts the multipart upload, if any.
func (w *writer) abort() {
	w.closeParts()
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if !started {
		return
	}
	w.stop()
	<-w.finished
	w.mu.Lock()
	id := w.uploadID
	w.uploadID = ""
	w.mu.Unlock()
	if id != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.s.core.AbortMultipartUpload(ctx, w.s.bucket, w.key, id); err != nil {
			w.s.log.Warn("abort S3 multipart upload", slog.String("digest", w.d.String()), slog.Any("error", err))
		}
	}
}

// Cancel and Close stop the uploader first: it reads the spool file.
func (w *writer) Cancel() error {
	w.abort()
	return w.local.Cancel()
}

func (w *writer) Close() error {
	w.abort()
	return w.local.Close() // cancels an uncommitted write
}

// AbortStale aborts multipart uploads under the store's prefix started
// more than olderThan ago: those of a replica killed mid-fill (a live fill
// that old has long hit the fill timeout). It returns how many it aborted;
// one it cannot abort is passed over (the first such error is returned
// after the others were tried).
func (s *Store) AbortStale(ctx context.Context, olderThan time.Duration) (int, error) {
	n := 0
	var first error
	for u := range s.c.ListIncompleteUploads(ctx, s.bucket, s.prefix+"blobs/", true) {
		if u.Err != nil {
			return n, errors.Join(first, fmt.Errorf("list S3 multipart uploads: %w", u.Err))
		}
		if time.Since(u.Initiated) < olderThan {
			continue
		}
		err := s.core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID)
		if err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" && !notFound(err) {
			if first == nil {
				first = fmt.Errorf("abort stale S3 upload of %s: %w", u.Key, err)
			}
			continue
		}
		n++
	}
	return n, first
}

// Quarantine moves d's object under the prefix's quarantine/ (named
// <algorithm>-<hex>), out of every request's reach, and drops any local
// tier copy; it returns the new key. An object already gone is no error.
func (s *Store) Quarantine(ctx context.Context, d digest.Digest) (string, error) {
	k, err := s.key(d)
	if err != nil {
		return "", err
	}
	if s.tier {
		if n, err := s.spool.Stat(ctx, d); err == nil && s.spool.Delete(ctx, d) == nil {
			s.tierBytes.Add(-n)
		}
	}
	to := s.prefix + "quarantine/" + string(d.Algorithm()) + "-" + d.Encoded()
	_, err = s.c.CopyObject(ctx, minio.CopyDestOptions{Bucket: s.bucket, Object: to}, minio.CopySrcOptions{Bucket: s.bucket, Object: k})
	if notFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("quarantine blob %s in S3: %w", d, err)
	}
	if err := s.c.RemoveObject(ctx, s.bucket, k, minio.RemoveObjectOptions{}); err != nil && !notFound(err) {
		return "", fmt.Errorf("quarantine blob %s in S3: %w", d, err)
	}
	return to, nil
}

// Readable checks what a replica needs to serve: its local spool (and
// tier) can be read. The bucket's reachability is Writable's question:
// with S3 down, tier hits are still served.
func (s *Store) Readable(ctx context.Context) error { return s.spool.Readable(ctx) }

// Writable checks that new content can be stored: the spool takes a file
// and the bucket answers.
func (s *Store) Writable(ctx context.Context) error {
	if err := s.spool.Writable(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("reach S3 bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("S3 bucket %s does not exist", s.bucket)
	}
	return nil
}

// LocalTierSize is the bound of the local tier in front of S3 (0: none).
func (s *Store) LocalTierSize() int64 { return s.tierMax }

// Quarantined counts the objects under the quarantine/ prefix.
func (s *Store) Quarantined(ctx context.Context) (int, string, error) {
	prefix := s.prefix + "quarantine/"
	n := 0
	for obj := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return n, "", fmt.Errorf("list quarantined objects in S3: %w", obj.Err)
		}
		n++
	}
	return n, "s3://" + s.bucket + "/" + prefix, nil
}
