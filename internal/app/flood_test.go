package app

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

// TestMetricsBoundedUnderFlood: requests with made-up methods and paths,
// from a refused address and an allowed one, do not grow /metrics: every
// label comes from a closed set.
func TestMetricsBoundedUnderFlood(t *testing.T) {
	hub := testenv.NewHub(t)
	for _, allow := range []string{"10.0.0.0/8", "127.0.0.0/8"} { // refused, then allowed
		t.Run(allow, func(t *testing.T) {
			m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_ALLOW": allow})
			admin := m.App.AdminHandler()
			size := func() int {
				w := httptest.NewRecorder()
				admin.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
				return w.Body.Len()
			}
			flood := func(n int) {
				conn, err := net.DialTimeout("tcp", m.Host, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				r := bufio.NewReader(conn)
				for i := range n {
					method := strings.Repeat(string(rune('A'+rand.IntN(26))), 1+rand.IntN(2000)) + fmt.Sprint(i)
					path := fmt.Sprintf("/v2/%x/%s/%d", rand.Uint64(), []string{"manifests", "blobs", "tags", "x"}[i%4], i)
					fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: m\r\nUser-Agent: ua-%d\r\nAccept: type/%d\r\n\r\n", method, path, i, i)
					resp, err := http.ReadResponse(r, nil)
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					resp.Body.Close()
					if resp.Close {
						return
					}
				}
			}
			flood(20) // every label the flood can reach at all
			before := size()
			for range 10 {
				flood(200)
			}
			if after := size(); after > before+2048 {
				t.Fatalf("/metrics grew from %d to %d bytes under 2,000 made-up requests", before, after)
			}
		})
	}
}
