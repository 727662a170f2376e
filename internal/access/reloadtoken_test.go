package access

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestTokenSurvivesReload: a reload (SIGHUP) that reads the same htpasswd
// file again keeps every token valid; one whose file changed a user's
// password ends that user's tokens only, with the message that says so.
func TestTokenSurvivesReload(t *testing.T) {
	e := newLoginEnv(t, bcrypt.MinCost)
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	aliceLine := "alice:" + hash("secret-a") + "\n"
	write := func(bobPW string, mod time.Time) {
		if err := os.WriteFile(e.path, []byte(aliceLine+"bob:"+hash(bobPW)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(e.path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	write("secret-b", time.Now().Add(time.Hour))
	e.advance(2 * time.Second) // the file is looked at again at most once a second
	token := func(user, pw string) string {
		w := e.get("/token?service=regcache", "127.0.0.1", basic(user, pw))
		var body struct {
			Token string `json:"token"`
		}
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &body) != nil {
			t.Fatalf("token for %s: %d %s", user, w.Code, w.Body)
		}
		return body.Token
	}
	alice, bob := token("alice", "secret-a"), token("bob", "secret-b")
	cfg := Config{Htpasswd: e.path, Private: PrivateAllow}
	if _, err := e.a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	for user, tok := range map[string]string{"alice": alice, "bob": bob} {
		if w := e.get("/v2/", "127.0.0.1", "Bearer "+tok); w.Code != 200 {
			t.Errorf("%s's token after a reload that changed nothing: %d %s", user, w.Code, w.Body)
		}
	}
	write("new-secret-b", time.Now().Add(2*time.Hour)) // bob's password changes
	if _, err := e.a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if w := e.get("/v2/", "127.0.0.1", "Bearer "+alice); w.Code != 200 {
		t.Errorf("alice's token after bob's password changed: %d %s", w.Code, w.Body)
	}
	if w := e.get("/v2/", "127.0.0.1", "Bearer "+bob); w.Code != 401 || !strings.Contains(w.Body.String(), "password changed") {
		t.Errorf("bob's token after his password changed: %d %s", w.Code, w.Body)
	}
}

// TestLoginBackoffPerUser: guesses for one user name spread over many
// addresses (one failure each, under the per-address limit) are budgeted
// too: after freeUserFailures the name is refused unchecked, even with the
// right password from a fresh address, while other names are not; after
// the wait the right password works and clears the name.
func TestLoginBackoffPerUser(t *testing.T) {
	e := newLoginEnv(t, bcrypt.MinCost)
	for i := range freeUserFailures {
		if w := e.get("/v2/", fmt.Sprintf("10.3.0.%d", i+1), basic("alice", "nope")); w.Code != 401 {
			t.Fatalf("failure %d: %d", i+1, w.Code)
		}
	}
	w := e.get("/v2/", "10.4.0.1", basic("alice", "secret-a"))
	if w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("alice after %d failures from as many addresses: %d, Retry-After %q", freeUserFailures, w.Code, w.Header().Get("Retry-After"))
	}
	if w := e.get("/v2/", "10.4.0.2", basic("carol", "nope")); w.Code != 401 {
		t.Errorf("another user name during alice's backoff: %d, want 401", w.Code)
	}
	e.advance(2 * time.Second)
	if w := e.get("/v2/", "10.4.0.1", basic("alice", "secret-a")); w.Code != 200 {
		t.Fatalf("after the wait: %d", w.Code)
	}
	if w := e.get("/v2/", "10.5.0.1", basic("alice", "nope")); w.Code != 401 {
		t.Errorf("a success clears the name, so a failure is free again: %d", w.Code)
	}
}
