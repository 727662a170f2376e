// Package certfile serves a TLS certificate pair kept in files, and
// loads it again when either file changes (checked at most every second)
// or on demand (SIGHUP), keeping the old pair while a new one fails to
// load: certificates rotate without a restart.
package certfile

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Pair serves the certificate in cert/key files and loads it again when
// either file changes.
type Pair struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time // of the files behind cert
	failed  time.Time // of the files that last failed to load (logged once)
	checked time.Time
}

// Load reads the pair; an error names both files.
func Load(certFile, keyFile string, log *slog.Logger) (*Pair, error) {
	r := &Pair{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Pair) stamp() time.Time {
	var t time.Time
	for _, f := range []string{r.certFile, r.keyFile} {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

func (r *Pair) load() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s / key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.modTime = &c, r.stamp()
	return nil
}

// Reload loads the pair now (SIGHUP); on an error the old one is kept.
func (r *Pair) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checked = time.Now()
	old := r.cert
	if err := r.load(); err != nil {
		r.cert = old
		return err
	}
	return nil
}

// GetCertificate is tls.Config.GetCertificate: the pair, loaded again
// first when its files changed.
func (r *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) > time.Second {
		r.checked = time.Now()
		if st := r.stamp(); !st.Equal(r.modTime) {
			// A pair caught half-written fails to load; it is tried again
			// every second until it loads (whatever the files' times).
			if err := r.load(); err != nil {
				if !st.Equal(r.failed) {
					r.log.Error("TLS certificate changed but does not load; keeping the old one", slog.Any("error", err))
					r.failed = st
				}
			} else {
				r.log.Info("TLS certificate reloaded", slog.String("cert", r.certFile))
			}
		}
	}
	return r.cert, nil
}

// CertFile is the certificate's file.
func (r *Pair) CertFile() string { return r.certFile }
