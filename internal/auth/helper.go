package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker-credential-helpers/client"
	"github.com/docker/docker-credential-helpers/credentials"
	"golang.org/x/sync/singleflight"
)

// Defaults of a HelperConfig.
const (
	// helperTimeout bounds one run of a credential program: a helper
	// that hangs (a keyring prompt, a cloud API that does not answer) is
	// killed with its process group.
	helperTimeout = 30 * time.Second
	// helperRetry is how long a failed run's error is answered before the
	// program runs again, and the youngest credentials a refusal makes
	// the program run again for: a 401 storm runs it once, not once per
	// request.
	helperRetry = 2 * time.Second
	// maxHelperOutput bounds what is read of a program's output.
	maxHelperOutput = 64 << 10
)

// HelperConfig says how to run a credential program.
type HelperConfig struct {
	// Argv is the program and its arguments: docker-credential-<name> get
	// (HelperArgv), or any command printing the same JSON.
	Argv []string
	// Server is written on the program's standard input: the registry
	// host, as the Docker CLI writes it (ServerOf).
	Server string
	// TTL is how long an answer is used before the program runs again;
	// 0 keeps it until the upstream refuses it.
	TTL time.Duration
	// Timeout bounds one run (default 30s); Retry is how long a failure
	// is answered without running again (default 2s).
	Timeout, Retry time.Duration
	// Upstream names the upstream in the log; Log gets a warning for each
	// failed run and a note when a run succeeds again (default discard).
	Upstream string
	Log      *slog.Logger
}

// HelperArgv is the command line of the Docker credential helper called
// name: docker-credential-<name> get.
func HelperArgv(name string) []string { return []string{"docker-credential-" + name, "get"} }

// ServerOf is what the Docker CLI writes to a credential helper for a
// registry host: Docker Hub's historical index URL for Docker Hub, the
// host (with its port) for any other registry.
func ServerOf(host string) string {
	switch strings.ToLower(host) {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return "https://index.docker.io/v1/"
	}
	return host
}

// Helper runs a credential program speaking the Docker credential-helper
// protocol (the registry on stdin, {"Username","Secret"} on stdout, as
// dockerd and the Docker CLI run docker-credential-ecr-login, -gcr, -acr-env,
// -pass, -secretservice) and keeps its answer in memory. One run at a time:
// concurrent callers share its result.
type Helper struct {
	cfg HelperConfig
	sf  singleflight.Group

	mu      sync.Mutex
	have    bool
	creds   Credentials
	fetched time.Time
	err     *HelperError // the last run's failure, until a run succeeds
	failed  time.Time
	runs    int64
}

// NewHelper returns a Helper; the program first runs when credentials
// are first needed.
func NewHelper(cfg HelperConfig) *Helper {
	if cfg.Timeout <= 0 {
		cfg.Timeout = helperTimeout
	}
	if cfg.Retry <= 0 {
		cfg.Retry = helperRetry
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Helper{cfg: cfg}
}

// HelperError is a credential program's failure. Its message names the
// program and never holds the credentials.
type HelperError struct {
	Program string
	Err     error
}

func (e *HelperError) Error() string { return "credential helper " + e.Program + ": " + e.Err.Error() }

func (e *HelperError) Unwrap() error { return e.Err }

// Credentials returns the cached answer, running the program when there
// is none, it is older than the TTL, or the upstream refused it. After a
// failed run the same error is returned for Retry without running again.
func (h *Helper) Credentials() (Credentials, error) {
	now := time.Now()
	h.mu.Lock()
	switch {
	case h.have && (h.cfg.TTL <= 0 || now.Sub(h.fetched) < h.cfg.TTL):
		c := h.creds
		h.mu.Unlock()
		return c, nil
	case h.err != nil && now.Sub(h.failed) < h.cfg.Retry:
		err := h.err
		h.mu.Unlock()
		return Credentials{}, err
	}
	h.mu.Unlock()
	v, err, _ := h.sf.Do("", func() (any, error) { return h.refresh() })
	if err != nil {
		return Credentials{}, err
	}
	return v.(Credentials), nil
}

// refresh runs the program once and records the outcome.
func (h *Helper) refresh() (Credentials, error) {
	c, err := h.run()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs++
	if err != nil {
		h.have, h.creds = false, Credentials{}
		h.err, h.failed = &HelperError{Program: h.cfg.Argv[0], Err: err}, time.Now()
		h.cfg.Log.Warn("upstream credential program failed: requests that need credentials fail until it answers (it runs again at the next one)",
			slog.String("upstream", h.cfg.Upstream), slog.Any("error", h.err))
		return Credentials{}, h.err
	}
	if h.err != nil {
		h.cfg.Log.Info("upstream credential program answered again", slog.String("upstream", h.cfg.Upstream), slog.String("program", h.cfg.Argv[0]))
	}
	h.have, h.creds, h.fetched, h.err = true, c, time.Now(), nil
	return c, nil
}

// Reject reports that the upstream (or its token realm) refused c: the
// next use runs the program again, unless c came from a run younger than
// Retry (the program's newest answer; running it again at once would
// tell the same).
func (h *Helper) Reject(c Credentials) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.have && h.creds == c && time.Since(h.fetched) >= h.cfg.Retry {
		h.have = false
	}
}

// Forget drops the kept answer and a failure's hold-back: the next use
// runs the program (SIGHUP, after an operator rotated a secret).
func (h *Helper) Forget() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.have, h.creds, h.failed = false, Credentials{}, time.Time{}
}

// HelperState is a Helper's standing, for status reports.
type HelperState struct {
	Runs      int64
	LastError string    // the last run's failure, "" once a run succeeds
	Since     time.Time // when that run failed
}

// State reports how many times the program ran and its last failure.
func (h *Helper) State() HelperState {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := HelperState{Runs: h.runs}
	if h.err != nil {
		st.LastError, st.Since = h.err.Error(), h.failed
	}
	return st
}

// run runs the program once, bounded by the timeout.
func (h *Helper) run() (Credentials, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Timeout)
	defer cancel()
	p := &program{ctx: ctx, argv: h.cfg.Argv}
	got, err := client.Get(func(args ...string) client.Program { return p }, h.cfg.Server)
	switch {
	case credentials.IsErrCredentialsNotFound(err):
		return Credentials{}, nil // the helper has none for this registry: anonymous
	case ctx.Err() != nil:
		return Credentials{}, fmt.Errorf("no answer within %s; killed", h.cfg.Timeout)
	case p.err != nil:
		return Credentials{}, p.failure()
	case err != nil:
		// client.Get decodes the output: it was not the protocol's JSON.
		// The decoder's message quotes at most a character of it.
		return Credentials{}, fmt.Errorf(`printed something that is not the credential JSON {"Username":…,"Secret":…}: %v`, err)
	}
	if got.Username == "<token>" {
		// An identity token (ACR, registries issuing refresh tokens): the
		// Docker CLI exchanges it at the realm with the OAuth2 refresh
		// grant.
		return Credentials{IdentityToken: got.Secret}, nil
	}
	return Credentials{Username: got.Username, Password: got.Secret}, nil
}

// program is one run of a credential program for client.Get: stdin the
// server, stdout read up to maxHelperOutput, the whole process group
// killed when ctx ends.
type program struct {
	ctx  context.Context
	argv []string
	in   io.Reader

	err    error // the run's failure (exit status, not found on PATH)
	stdout []byte
	stderr capped
}

func (p *program) Input(in io.Reader) { p.in = in }

func (p *program) Output() ([]byte, error) {
	cmd := exec.CommandContext(p.ctx, p.argv[0], p.argv[1:]...)
	cmd.Stdin = p.in
	var out capped
	cmd.Stdout, cmd.Stderr = &out, &p.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second // a grandchild holding stdout open does not hold the run
	p.err = cmd.Run()
	p.stdout = out.Bytes()
	return p.stdout, p.err
}

// failure words a failed run: its exit status and the first line it
// printed (helpers print their error on stdout, or stderr), cut short.
func (p *program) failure() error {
	msg := firstLine(p.stdout)
	if msg == "" {
		msg = firstLine(p.stderr.Bytes())
	}
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) {
		return p.err // not started: not found on PATH, not executable
	}
	if msg == "" {
		return p.err
	}
	return fmt.Errorf("%v: %s", p.err, msg)
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "{") {
		return "" // JSON, perhaps the credentials themselves: never echoed
	}
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	return line
}

// capped keeps the first maxHelperOutput bytes written and drops the
// rest (a program printing without end does not fill the memory).
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxHelperOutput - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
