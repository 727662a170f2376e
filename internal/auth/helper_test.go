package auth

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

func newTestHelper(ttl time.Duration) *Helper {
	return NewHelper(HelperConfig{Argv: HelperArgv("test"), Server: "registry.example:5000", TTL: ttl,
		Timeout: 500 * time.Millisecond, Retry: 300 * time.Millisecond})
}

// TestHelperProtocol: the program gets the registry on stdin and its JSON
// answer is the credentials; the answer is kept (one run for many uses),
// and concurrent callers after a refusal share one run.
func TestHelperProtocol(t *testing.T) {
	ch := testenv.NewCredHelper(t, "test", "me", "s3cret")
	h := newTestHelper(0)
	for range 3 {
		c, err := h.Credentials()
		if err != nil {
			t.Fatal(err)
		}
		if c != (Credentials{Username: "me", Password: "s3cret"}) {
			t.Fatalf("got %+v", c)
		}
	}
	if ch.Runs() != 1 || ch.Server() != "registry.example:5000" {
		t.Fatalf("runs %d, stdin %q; want 1 run reading registry.example:5000", ch.Runs(), ch.Server())
	}
	time.Sleep(350 * time.Millisecond) // older than Retry: a refusal runs it again
	ch.Set(t, testenv.CredAnswer, "me", "rotated")
	ch.SetDelay(t, "0.3")
	h.Reject(Credentials{Username: "me", Password: "s3cret"})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if c, err := h.Credentials(); err != nil || c.Password != "rotated" {
				t.Errorf("got %+v, %v", c, err)
			}
		})
	}
	wg.Wait()
	if ch.Runs() != 2 {
		t.Fatalf("20 concurrent callers ran the helper %d times in all, want 2", ch.Runs())
	}
	// A refusal of credentials the program gave a moment ago does not run
	// it again: a 401 storm is one run.
	h.Reject(Credentials{Username: "me", Password: "rotated"})
	if _, err := h.Credentials(); err != nil || ch.Runs() != 2 {
		t.Fatalf("runs %d (%v) after refusing a fresh answer, want 2", ch.Runs(), err)
	}
}

// TestHelperTTL: an answer older than the TTL is fetched again.
func TestHelperTTL(t *testing.T) {
	ch := testenv.NewCredHelper(t, "test", "me", "one")
	h := newTestHelper(200 * time.Millisecond)
	if c, _ := h.Credentials(); c.Password != "one" {
		t.Fatalf("got %+v", c)
	}
	ch.Set(t, testenv.CredAnswer, "me", "two")
	if c, _ := h.Credentials(); c.Password != "one" {
		t.Fatalf("within the TTL: got %+v, want the kept answer", c)
	}
	time.Sleep(250 * time.Millisecond)
	if c, _ := h.Credentials(); c.Password != "two" || ch.Runs() != 2 {
		t.Fatalf("after the TTL: got %+v after %d runs, want two after 2", c, ch.Runs())
	}
}

// TestHelperFailures: not found is anonymous; a failing, hanging (killed
// with its child at the timeout) or garbage-printing program is a clear
// error naming it, without the secret, answered again without a run until
// Retry has passed.
func TestHelperFailures(t *testing.T) {
	tests := []struct {
		mode string
		want string // in the error; "" is no error
	}{
		{testenv.CredNotFound, ""},
		{testenv.CredFail, "credential helper docker-credential-test: exit status 3: boom: the keyring is locked"},
		{testenv.CredGarbage, `credential helper docker-credential-test: printed something that is not the credential JSON`},
		{testenv.CredHang, "credential helper docker-credential-test: no answer within 500ms; killed"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			ch := testenv.NewCredHelper(t, "test", "me", "hunter2-secret")
			ch.Set(t, tt.mode, "me", "hunter2-secret")
			h := newTestHelper(0)
			start := time.Now()
			c, err := h.Credentials()
			took := time.Since(start)
			if tt.want == "" {
				if err != nil || c != (Credentials{}) {
					t.Fatalf("got %+v, %v; want anonymous", c, err)
				}
				return
			}
			var he *HelperError
			if !errors.As(err, &he) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want a *HelperError with %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(h.State().LastError, "hunter2") {
				t.Fatalf("the error shows the secret: %v", err)
			}
			if took > 3*time.Second {
				t.Fatalf("took %s", took)
			}
			if _, err2 := h.Credentials(); err2 == nil || ch.Runs() != 1 {
				t.Fatalf("right after a failure: %v after %d runs, want the same error without a run", err2, ch.Runs())
			}
			if tt.mode == testenv.CredHang {
				child := ch.Child()
				if child == 0 {
					t.Fatal("the hanging helper started no child")
				}
				deadline := time.Now().Add(5 * time.Second)
				for alive(child) {
					if time.Now().After(deadline) {
						t.Fatalf("the helper's child %d still runs after the timeout: the process group was not killed", child)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			if st := h.State(); st.LastError == "" || st.Since.IsZero() {
				t.Fatalf("state %+v holds no failure", st)
			}
			ch.Set(t, testenv.CredAnswer, "me", "ok")
			time.Sleep(350 * time.Millisecond)
			if c, err := h.Credentials(); err != nil || c.Password != "ok" || h.State().LastError != "" {
				t.Fatalf("after Retry, with the helper fixed: %+v, %v, %+v", c, err, h.State())
			}
		})
	}
}

// TestHelperRotationAtHub: against the Docker Hub stand-in, the helper's
// secret and the hub's accepted password change together; once the token
// expires the realm refuses the old password, the helper runs again, and
// pulls go on. Twelve first pulls at once, of three private repositories,
// share one run; without a refusal or expiry it is not asked again.
func TestHelperRotationAtHub(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	img := imgs.Single
	hub.SetPrivate(img.Repo, true)
	hub.SetCredentials("robot", "pw-1")
	hub.SetTokenTTL(time.Second)
	ch := testenv.NewCredHelper(t, "test", "robot", "pw-1")
	u, _ := url.Parse(hub.URL)
	h := NewHelper(HelperConfig{Argv: HelperArgv("test"), Server: ServerOf(u.Host), Retry: 500 * time.Millisecond})
	client := &http.Client{Transport: New(http.DefaultTransport, u, Credentials{}, WithCredentialHelper(h))}
	pull := func(phase string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, hub.URL+"/v2/"+img.Repo+"/manifests/"+img.Tag, nil)
		req.Header.Set("Accept", img.MediaType)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", phase, resp.StatusCode)
		}
	}
	ch.SetDelay(t, "0.3")
	var wg sync.WaitGroup
	for _, img := range []testenv.Image{imgs.Single, imgs.ManifestList, imgs.OCIIndex} {
		hub.SetPrivate(img.Repo, true)
		for range 4 {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodGet, hub.URL+"/v2/"+img.Repo+"/manifests/"+img.Tag, nil)
				req.Header.Set("Accept", img.MediaType)
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("concurrent first pulls of %s: %d", img.Repo, resp.StatusCode)
				}
			})
		}
	}
	wg.Wait()
	ch.SetDelay(t, "")
	pull("second pull")
	if ch.Runs() != 1 || ch.Server() != u.Host {
		t.Fatalf("helper ran %d times reading %q, want once reading %s", ch.Runs(), ch.Server(), u.Host)
	}
	ch.Set(t, testenv.CredAnswer, "robot", "pw-2")
	hub.SetCredentials("robot", "pw-2")
	time.Sleep(1100 * time.Millisecond) // the hub's token expires
	hub.ResetCounters()
	pull("after rotation")
	if ch.Runs() != 2 {
		t.Fatalf("helper ran %d times, want 2 (again after the realm's 401)", ch.Runs())
	}
	refused := 0
	for _, r := range hub.Requests() {
		if r.Kind == testenv.KindToken && r.Status == http.StatusUnauthorized {
			refused++
		}
	}
	if refused != 1 {
		t.Fatalf("the realm refused %d token requests, want 1 (the old password)", refused)
	}
	pull("after rotation, again")
	if ch.Runs() != 2 {
		t.Fatalf("helper ran %d times, want still 2", ch.Runs())
	}
}

// alive reports whether process pid runs (a zombie waiting for its reaper
// does not).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// TestHelperIdentityToken: a helper answering Username "<token>" gives an
// identity token, which goes to the realm in the OAuth2 refresh-token
// grant (as the Docker CLI sends it), never as basic credentials and
// never to the registry.
func TestHelperIdentityToken(t *testing.T) {
	testenv.NewCredHelper(t, "test", "<token>", "refresh-abc")
	var mu sync.Mutex
	var grants []string
	realmSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, basic := r.BasicAuth(); basic || r.Method != http.MethodPost || r.ParseForm() != nil {
			http.Error(w, "want the OAuth2 POST", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		grants = append(grants, r.PostForm.Encode())
		mu.Unlock()
		if r.PostForm.Get("grant_type") != "refresh_token" || r.PostForm.Get("refresh_token") != "refresh-abc" {
			http.Error(w, "bad grant", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"access_token":"acc-1","expires_in":300}`)
	}))
	t.Cleanup(realmSrv.Close)
	realm := strings.Replace(realmSrv.URL, "127.0.0.1", "localhost", 1) + "/oauth2/token"
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer acc-1" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="reg.test",scope="repository:app:pull"`, realm))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(reg.Close)
	u, _ := url.Parse(reg.URL)
	client := &http.Client{Transport: New(http.DefaultTransport, u, Credentials{}, WithCredentialHelper(newTestHelper(0)))}
	resp, err := client.Get(reg.URL + "/v2/app/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(grants) != 1 || !strings.Contains(grants[0], "service=reg.test") || !strings.Contains(grants[0], "scope=repository%3Aapp%3Apull") {
		t.Fatalf("grants %q, want one refresh grant for service reg.test, scope repository:app:pull", grants)
	}
}
