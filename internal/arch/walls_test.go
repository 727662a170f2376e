package arch

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/regcache/regcache/"

// TestWalls checks every package's regcache imports against the walls
// table of docs/architecture.md.
func TestWalls(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	walls, err := parseWalls(doc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, v := range check(walls, parseList(out)) {
		t.Error(v)
	}
}

// TestWallsCatchACrossing: the checker reports an import the table does
// not allow, and a table row for a package that does not exist.
func TestWallsCatchACrossing(t *testing.T) {
	walls := map[string][]string{"internal/registry": {"internal/oci", "internal/mirror"}, "internal/gone": nil}
	got := check(walls, map[string][]string{
		"internal/registry": {"internal/oci", "internal/cacheindex"},
		"internal/oci":      nil,
		"internal/leaf":     {"internal/oci"},
	})
	want := []string{
		"internal/registry imports internal/cacheindex, which docs/architecture.md does not allow",
		"internal/leaf imports internal/oci, which docs/architecture.md does not allow",
		"docs/architecture.md lists internal/gone, which is not a package",
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing violation %q in %q", w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d violations, want %d: %q", len(got), len(want), got)
	}
}

// parseWalls reads the "| package | may import |" table.
func parseWalls(doc []byte) (map[string][]string, error) {
	walls := map[string][]string{}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "| package | may import |") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 2 || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		pkg := strings.Trim(strings.TrimSpace(cells[0]), "`")
		var allowed []string
		for _, a := range strings.Split(cells[1], ",") {
			if a = strings.Trim(strings.TrimSpace(a), "`"); a != "" {
				allowed = append(allowed, a)
			}
		}
		walls[pkg] = allowed
	}
	if len(walls) == 0 {
		return nil, fmt.Errorf("docs/architecture.md has no \"| package | may import |\" table")
	}
	return walls, sc.Err()
}

// parseList reads `go list` lines of a package and its imports, keeping
// regcache's own, relative to the module.
func parseList(out []byte) map[string][]string {
	pkgs := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(f[0], module)
		pkgs[pkg] = nil
		for _, imp := range f[1:] {
			if rel, ok := strings.CutPrefix(imp, module); ok {
				pkgs[pkg] = append(pkgs[pkg], rel)
			}
		}
	}
	return pkgs
}

func check(walls, pkgs map[string][]string) []string {
	var out []string
	for pkg, imports := range pkgs {
		for _, imp := range imports {
			if !slices.Contains(walls[pkg], imp) {
				out = append(out, fmt.Sprintf("%s imports %s, which docs/architecture.md does not allow", pkg, imp))
			}
		}
	}
	for pkg := range walls {
		if _, ok := pkgs[pkg]; !ok {
			out = append(out, fmt.Sprintf("docs/architecture.md lists %s, which is not a package", pkg))
		}
	}
	slices.Sort(out)
	return out
}
