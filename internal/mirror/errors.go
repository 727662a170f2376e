package mirror

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"syscall"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// wire turns an error of the store, a fill or an upstream into the spec's
// error (*oci.Error), so the HTTP package answers it without knowing those
// packages. unknown is the code for "the upstream does not have it"
// (MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN). Other errors (a client
// that left, an internal failure) are returned as they are.
func wire(err error, unknown oci.ErrorCode) error {
	if err == nil {
		return nil
	}
	var we *oci.Error
	if errors.As(err, &we) {
		return we
	}
	if status, ok := upstream.SealedStatus(err); ok {
		if status == http.StatusServiceUnavailable { // sealed_miss_status: 503
			return &oci.Error{Code: oci.ErrUnavailable, Status: status, Message: err.Error()}
		}
		return &oci.Error{Code: unknown, Message: err.Error()}
	}
	if ra, ok := upstream.IsTooManyRequests(err); ok {
		return &oci.Error{Code: oci.ErrTooManyRequests, RetryAfter: ra,
			Message: "the upstream's rate limit is exhausted and nothing is cached: " + err.Error()}
	}
	if errors.Is(err, fill.ErrDiskFull) || errors.Is(err, syscall.ENOSPC) {
		// Never the error's text: it names local paths.
		return &oci.Error{Code: oci.ErrUnavailable, Status: http.StatusInsufficientStorage, Message: "the mirror's cache disk is full; nothing was cached (the mirror's log has the details)"}
	}
	if errors.Is(err, blobstore.ErrUnavailable) {
		return &oci.Error{Code: oci.ErrUnavailable, Status: http.StatusServiceUnavailable,
			Message: "the mirror's object store (S3) is unreachable, so whether it holds this is not known; nothing was fetched (retry; the mirror's log has the details)"}
	}
	if errors.Is(err, blobstore.ErrDigestMismatch) || errors.Is(err, blobstore.ErrSizeMismatch) {
		return &oci.Error{Code: oci.ErrUnavailable, Status: http.StatusBadGateway, Message: "the upstream sent content that does not match its digest; nothing was cached: " + err.Error()}
	}
	switch c, _ := upstream.Classify(err); c {
	case upstream.NotFound:
		return &oci.Error{Code: unknown, Message: err.Error()}
	case upstream.Refused:
		return &oci.Error{Code: oci.ErrDenied, Message: err.Error() + " (the mirror's upstream credentials do not give access)"}
	case upstream.LoginRefused:
		return &oci.Error{Code: oci.ErrDenied, Message: err.Error() + " (check the mirror's upstream credentials)"}
	case upstream.Rejected:
		return &oci.Error{Code: oci.ErrUnavailable, Status: http.StatusBadGateway, Message: err.Error()}
	case upstream.Down:
		return &oci.Error{Code: oci.ErrUnavailable, Message: err.Error() + "; nothing is cached for this request"}
	case upstream.NoCredentials:
		return &oci.Error{Code: oci.ErrUnavailable, Message: err.Error() + " (the mirror's credential program for this upstream failed: see its log)"}
	}
	if unwritable(err) {
		return &oci.Error{Code: oci.ErrUnavailable, Message: "the mirror cannot write its cache directory (" + errnoText(err) + "); nothing was cached"}
	}
	var pe *fs.PathError
	var le *os.LinkError
	var se *os.SyscallError
	switch { // the store's errors: never a local path in a client's answer
	case errors.As(err, &pe):
		return &oci.Error{Code: oci.ErrUnknown, Message: "the mirror's cache storage failed: " + pe.Op + ": " + pe.Err.Error()}
	case errors.As(err, &le):
		return &oci.Error{Code: oci.ErrUnknown, Message: "the mirror's cache storage failed: " + le.Op + ": " + le.Err.Error()}
	case errors.As(err, &se):
		return &oci.Error{Code: oci.ErrUnknown, Message: "the mirror's cache storage failed: " + se.Syscall + ": " + se.Err.Error()}
	}
	return err
}

// errNotConfigured answers a request routed to an upstream the service
// was not given (the router and the service disagree).
func errNotConfigured(name string) *oci.Error {
	return oci.Errorf(oci.ErrNameUnknown, "upstream %q is not configured on this mirror", name)
}

// unwritable reports a store that cannot take content: a read-only file
// system or directory (EROFS, EACCES, EPERM). Like a full disk (ENOSPC,
// handled apart), it is answered by serving without caching.
func unwritable(err error) bool {
	return errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}

// cannotCache is a full or unwritable store.
func cannotCache(err error) bool { return errors.Is(err, syscall.ENOSPC) || unwritable(err) }

// errnoText is the system error's text alone, without the path.
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return "storage error"
}
