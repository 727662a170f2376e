package testenv

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is a testing.TB that records Skipf and Fatalf instead of
// stopping the goroutine, so RequireTool's two outcomes can be observed.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func TestRequireTool(t *testing.T) {
	if p := RequireTool(t, "sh"); p == "" {
		t.Fatal("RequireTool(sh) returned an empty path")
	}
	tests := []struct {
		name       string
		ci         string
		wantSkip   bool
		wantFailed bool
	}{
		{name: "local skips", ci: "", wantSkip: true},
		{name: "CI fails", ci: "true", wantFailed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			rec := &recorder{TB: t}
			if p := RequireTool(rec, "dockerd-not-installed"); p != "" {
				t.Errorf("path = %q, want empty", p)
			}
			if rec.skipped != tt.wantSkip || rec.failed != tt.wantFailed {
				t.Errorf("skipped=%v failed=%v, want %v %v (%s)", rec.skipped, rec.failed, tt.wantSkip, tt.wantFailed, rec.msg)
			}
		})
	}
	t.Run("names the Debian package", func(t *testing.T) {
		t.Setenv("CI", "true")
		rec := &recorder{TB: t}
		debianPackages["regcache-fake-tool"] = "regcache-fake-pkg"
		defer delete(debianPackages, "regcache-fake-tool")
		RequireTool(rec, "regcache-fake-tool")
		if want := "apt-get install regcache-fake-pkg"; !strings.Contains(rec.msg, want) {
			t.Errorf("message %q does not mention %q", rec.msg, want)
		}
	})
}

func TestWaitHTTP(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	WaitHTTP(t, srv.URL, 5*time.Second)
	if n := calls.Load(); n != 3 {
		t.Errorf("server saw %d requests, want 3", n)
	}
}

func TestListenAndFreePort(t *testing.T) {
	l := Listen(t)
	if got := l.Addr().String(); !strings.Contains(got, "127.0.0.1:") {
		t.Errorf("Listen address %s is not on loopback", got)
	}
	if p := FreePort(t); p <= 0 {
		t.Errorf("FreePort = %d", p)
	}
}
