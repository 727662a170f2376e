package registry

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestTagListPagination: n and last are applied by the mirror to the whole
// list, whatever the upstream does with them (this one ignores both and
// pages by its own Link), and the Link the client gets comes back through
// the client's route.
// (A Link the upstream sends is followed for its n and last only.)
func TestTagListPagination(t *testing.T) {
	e := newEnv(t, envOptions{})
	// An upstream that ignores n and last and answers unsorted.
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/tags/list") {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"name": "team/app", "tags": []string{"v2", "latest", "a", "c", "b"}})
	}))
	defer fake.Close()
	ts := twoUpstreams(t, e, fake.URL)
	get := func(path string) (tags []string, link string) {
		t.Helper()
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var l struct {
			Tags []string `json:"tags"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &l) != nil {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		return l.Tags, resp.Header.Get("Link")
	}
	all, link := get("/v2/b.example/team/app/tags/list")
	if want := []string{"a", "b", "c", "latest", "v2"}; !slices.Equal(all, want) || link != "" {
		t.Fatalf("whole list %v, Link %q; want %v and no Link", all, link, want)
	}
	first, link := get("/v2/b.example/team/app/tags/list?n=2")
	if !slices.Equal(first, []string{"a", "b"}) || !strings.HasPrefix(link, "</v2/b.example/team/app/tags/list?") || !strings.Contains(link, "last=b") {
		t.Fatalf("n=2: %v, Link %q", first, link)
	}
	next := link[1:strings.IndexByte(link, '>')]
	if second, _ := get(next); !slices.Equal(second, []string{"c", "latest"}) {
		t.Fatalf("the Link's page: %v", second)
	}
	if after, _ := get("/v2/b.example/team/app/tags/list?last=latest"); !slices.Equal(after, []string{"v2"}) {
		t.Fatalf("last=latest: %v", after)
	}
	if none, _ := get("/v2/b.example/team/app/tags/list?n=0"); len(none) != 0 {
		t.Fatalf("n=0: %v", none)
	}
}
