package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// CredHelper is a real Docker credential helper, docker-credential-<name>,
// a shell script in a temporary directory put first on PATH: it reads the
// registry on stdin (kept, for Server), counts its runs, and answers as its
// mode says. Set the mode, user and secret between runs to rotate.
type CredHelper struct {
	// Name is the helper's name: credential_helper: <Name>.
	Name string
	// Path is the script's path.
	Path string
	dir  string
}

// Credential helper modes.
const (
	CredAnswer   = ""         // print {"ServerURL","Username","Secret"}
	CredNotFound = "notfound" // print the protocol's not-found message, exit 1
	CredGarbage  = "garbage"  // print a line that is not JSON (it holds the secret), exit 0
	CredFail     = "fail"     // print an error line, exit 3
	CredHang     = "hang"     // start a child that sleeps a minute, and wait for it
)

const credHelperScript = `#!/bin/sh
dir=$(dirname "$0")
echo run >> "$dir/runs"
cat > "$dir/stdin"
if [ -s "$dir/delay" ]; then sleep "$(cat "$dir/delay")"; fi
case "$(cat "$dir/mode")" in
notfound) echo "credentials not found in native keychain"; exit 1 ;;
garbage) echo "hello $(cat "$dir/secret")"; exit 0 ;;
fail) echo "boom: the keyring is locked"; exit 3 ;;
hang) sleep 60 & echo $! > "$dir/child"; wait; exit 0 ;;
esac
printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}\n' "$(cat "$dir/stdin")" "$(cat "$dir/user")" "$(cat "$dir/secret")"
`

// NewCredHelper writes docker-credential-<name> answering user/secret and
// puts its directory first on PATH for the rest of the test (so the test
// must not be parallel).
func NewCredHelper(t testing.TB, name, user, secret string) *CredHelper {
	t.Helper()
	dir := t.TempDir()
	h := &CredHelper{Name: name, Path: filepath.Join(dir, "docker-credential-"+name), dir: dir}
	if err := os.WriteFile(h.Path, []byte(credHelperScript), 0o755); err != nil {
		t.Fatal(err)
	}
	h.write(t, "runs", "")
	h.Set(t, CredAnswer, user, secret)
	h.SetDelay(t, "")
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return h
}

func (h *CredHelper) write(t testing.TB, file, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, file), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (h *CredHelper) read(file string) string {
	b, _ := os.ReadFile(filepath.Join(h.dir, file))
	return string(b)
}

// Set changes what the next runs answer.
func (h *CredHelper) Set(t testing.TB, mode, user, secret string) {
	t.Helper()
	h.write(t, "mode", mode)
	h.write(t, "user", user)
	h.write(t, "secret", secret)
}

// SetDelay makes each run sleep first (a sleep(1) duration, e.g. "0.3").
func (h *CredHelper) SetDelay(t testing.TB, seconds string) {
	t.Helper()
	h.write(t, "delay", seconds)
}

// Runs is how many times the helper ran.
func (h *CredHelper) Runs() int { return strings.Count(h.read("runs"), "run\n") }

// Server is what the last run read on stdin.
func (h *CredHelper) Server() string { return h.read("stdin") }

// Child is the process id of the sleeping child of the last hanging run
// (0 if none).
func (h *CredHelper) Child() int {
	n, _ := strconv.Atoi(strings.TrimSpace(h.read("child")))
	return n
}
