package access

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

type loginEnv struct {
	a     *Access
	h     http.Handler
	path  string
	mu    sync.Mutex
	clock time.Time
}

func (e *loginEnv) now() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.clock }
func (e *loginEnv) advance(d time.Duration) {
	e.mu.Lock()
	e.clock = e.clock.Add(d)
	e.mu.Unlock()
}

func writeUsers(t *testing.T, path string, cost int, users map[string]string) {
	t.Helper()
	var b strings.Builder
	for u, pw := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(u + ":" + string(h) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newLoginEnv(t *testing.T, cost int) *loginEnv {
	t.Helper()
	e := &loginEnv{path: filepath.Join(t.TempDir(), "htpasswd"), clock: time.Now()}
	writeUsers(t, e.path, cost, map[string]string{"alice": "secret-a"})
	a, err := New(Config{Htpasswd: e.path, Private: PrivateAllow}, WithClock(e.now))
	if err != nil {
		t.Fatal(err)
	}
	e.a = a
	e.h = a.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	return e
}

func (e *loginEnv) get(path, from, auth string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", path, nil)
	r.RemoteAddr = from + ":1"
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func basic(user, pw string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pw)
	return r.Header.Get("Authorization")
}

// TestUnknownUserTakesAsLong: the dummy hash an unknown user is checked
// against has the cost of the file's hashes, so a refusal does not tell
// whether the user exists (by the hash's cost, and by time, many samples).
func TestUnknownUserTakesAsLong(t *testing.T) {
	e := newLoginEnv(t, 8)
	if e.a.cur().users.cost != 8 {
		t.Fatalf("dummy cost %d for a file of cost-8 hashes", e.a.cur().users.cost)
	}
	if c, _ := bcrypt.Cost(dummyHash(e.a.cur().users.cost)); c != 8 {
		t.Fatalf("dummy hash of cost %d", c)
	}
	// Interleaved samples, and the fastest of each: a loaded machine only
	// ever adds time, so the minimum is the check's own cost.
	fastest := func(user string, best *time.Duration) {
		start := time.Now()
		e.a.cur().users.verify(user, "wrong")
		if d := time.Since(start); *best == 0 || d < *best {
			*best = d
		}
	}
	var known, unknown time.Duration
	for range 9 {
		fastest("alice", &known)
		fastest("mallory", &unknown)
	}
	if r := float64(unknown) / float64(known); r > 3 || r < 1.0/3 {
		t.Errorf("wrong password for a known user: %v, for an unknown one: %v (ratio %.1f)", known, unknown, r)
	}
}

// TestLoginBackoff: after five failures an address waits, doubling, and is
// told so with 429 and Retry-After, its attempts unchecked; another
// address logs in at once; the wait over, a good login clears the address.
func TestLoginBackoff(t *testing.T) {
	e := newLoginEnv(t, bcrypt.MinCost)
	const bad, good = "10.1.1.1", "10.2.2.2"
	for i := range freeFailures {
		if w := e.get("/v2/", bad, basic("alice", "nope")); w.Code != 401 {
			t.Fatalf("failure %d: %d", i+1, w.Code)
		}
	}
	w := e.get("/v2/", bad, basic("alice", "secret-a"))
	if w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d, Retry-After %q", freeFailures, w.Code, w.Header().Get("Retry-After"))
	}
	if w := e.get("/token?service=regcache", bad, basic("alice", "secret-a")); w.Code != 429 {
		t.Fatalf("/token from a throttled address: %d", w.Code)
	}
	if w := e.get("/v2/", good, basic("alice", "secret-a")); w.Code != 200 {
		t.Fatalf("another address during the backoff: %d", w.Code)
	}
	if failed, throttled := e.a.LoginFailures(); failed != freeFailures || throttled != 2 {
		t.Errorf("counters: %d failed, %d throttled; want %d, 2", failed, throttled, freeFailures)
	}
	e.advance(2 * time.Second)
	if w := e.get("/v2/", bad, basic("alice", "secret-a")); w.Code != 200 {
		t.Fatalf("after the wait: %d", w.Code)
	}
	if w := e.get("/v2/", bad, basic("alice", "nope")); w.Code != 401 {
		t.Fatalf("a success clears the address, so one failure is free again: %d", w.Code)
	}
}

// TestTokenChecksPasswordOnce: a /token GET with Basic credentials costs
// one bcrypt comparison, not two.
func TestTokenChecksPasswordOnce(t *testing.T) {
	e := newLoginEnv(t, bcrypt.MinCost)
	before := e.a.cur().users.compares.Load()
	if w := e.get("/token?service=regcache", "127.0.0.1", basic("alice", "secret-a")); w.Code != 200 {
		t.Fatalf("token: %d %s", w.Code, w.Body)
	}
	if n := e.a.cur().users.compares.Load() - before; n != 1 {
		t.Errorf("%d password comparisons for one token request", n)
	}
}

// TestChangedPasswordEndsToken: a token issued before the user's password
// changed stops working as soon as the file is reloaded.
func TestChangedPasswordEndsToken(t *testing.T) {
	e := newLoginEnv(t, bcrypt.MinCost)
	w := e.get("/token?service=regcache", "127.0.0.1", basic("alice", "secret-a"))
	var body struct {
		Token string `json:"token"`
	}
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &body) != nil {
		t.Fatalf("token: %d %s", w.Code, w.Body)
	}
	if w := e.get("/v2/", "127.0.0.1", "Bearer "+body.Token); w.Code != 200 {
		t.Fatalf("fresh token: %d", w.Code)
	}
	writeUsers(t, e.path, bcrypt.MinCost, map[string]string{"alice": "new-secret"})
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(e.path, later, later); err != nil {
		t.Fatal(err)
	}
	e.advance(2 * time.Second) // the file is looked at again at most once a second
	w = e.get("/v2/", "127.0.0.1", "Bearer "+body.Token)
	if w.Code != 401 || !strings.Contains(w.Body.String(), "password changed") {
		t.Fatalf("token after the password changed: %d %s", w.Code, w.Body)
	}
	if w := e.get("/v2/", "127.0.0.1", basic("alice", "new-secret")); w.Code != 200 {
		t.Fatalf("the new password: %d", w.Code)
	}
}

// TestLoginBurstFromOneAddress: a burst of wrong passwords from one address
// checks at most a few at once, so a login from elsewhere is not queued
// behind it; a client sending good Basic credentials on every request, many
// at once, is never held back.
func TestLoginBurstFromOneAddress(t *testing.T) {
	e := newLoginEnv(t, 8) // slow enough that the burst overlaps
	var wg sync.WaitGroup
	codes := make(chan int, 40)
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- e.get("/v2/", "10.9.9.9", basic("alice", "nope")).Code
		}()
	}
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if w := e.get("/v2/", "10.8.8.8", basic("alice", "secret-a")); w.Code != 200 {
		t.Fatalf("login during the burst: %d", w.Code)
	}
	took := time.Since(start)
	wg.Wait()
	close(codes)
	refused := 0
	for c := range codes {
		if c == 429 {
			refused++
		}
	}
	if refused < 30 {
		t.Errorf("only %d of 40 concurrent wrong logins from one address were refused unchecked", refused)
	}
	if took > 3*time.Second {
		t.Errorf("a login from another address took %v during the burst", took)
	}
	// Good credentials, remembered, many at once from one address.
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if w := e.get("/v2/", "10.7.7.7", basic("alice", "secret-a")); w.Code != 200 {
					t.Errorf("remembered login: %d", w.Code)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestConcurrentRightLoginsFromOneAddress: parallel pulls from one address
// log in at once (compose, kubelet, a NAT): the first is checked, the
// others wait their turn and find it remembered; none is refused.
func TestConcurrentRightLoginsFromOneAddress(t *testing.T) {
	e := newLoginEnv(t, 8)
	var wg sync.WaitGroup
	codes := make(chan int, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- e.get("/token?service=regcache", "10.6.6.6", basic("alice", "secret-a")).Code
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("a right login among parallel ones from one address: %d", c)
		}
	}
}
