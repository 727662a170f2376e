package fleet

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseUserAgent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ua   string
		want Engine
	}{
		{"dockerd", `docker/20.10.24+dfsg1 go/go1.19.8 git-commit/5d6db84 kernel/6.1.0-18-amd64 os/linux arch/amd64 UpstreamClient(Docker-Client/20.10.24+dfsg1 \(linux\))`, Engine{Dockerd, "20.10.24+dfsg1"}},
		{"containerd debian", "containerd/1.6.20~ds1", Engine{Containerd, "1.6.20~ds1"}},
		{"containerd v", "containerd/v1.7.24", Engine{Containerd, "1.7.24"}},
		{"podman", "containers/5.23.1 (github.com/containers/image)", Engine{ContainersImage, "5.23.1"}},
		{"skopeo", "skopeo/1.9.3", Engine{Skopeo, "1.9.3"}},
		{"cri-o", "cri-o/1.28.1 go/go1.20.10 os/linux arch/amd64", Engine{CRIO, "1.28.1"}},
		{"crane", "crane/v0.19.0 go-containerregistry/v0.19.0", Engine{Crane, "0.19.0"}},
		{"buildah", "Buildah/1.33.2", Engine{Buildah, "1.33.2"}},
		{"curl", "curl/8.5.0", Engine{Name: Other}},
		{"empty", "", Engine{Name: Other}},
		{"junk version", "docker/<script>", Engine{Name: Dockerd}},
		{"long version", "docker/" + strings.Repeat("1", 100), Engine{Dockerd, strings.Repeat("1", maxVersion)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ParseUserAgent(tt.ua); got != tt.want {
				t.Errorf("ParseUserAgent(%q) = %+v, want %+v", tt.ua, got, tt.want)
			}
		})
	}
}

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func addr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }

// TestTableBounded: the table keeps at most its maximum, dropping the node
// seen least recently, and counts what it dropped.
func TestTableBounded(t *testing.T) {
	t.Parallel()
	tb := New(3, DefaultMaxArrivals)
	for i := range 5 {
		tb.Observe(Request{Time: t0.Add(time.Duration(i) * time.Second), Addr: addr(i), UserAgent: "docker/25.0.0", Pull: true, Bytes: 10})
	}
	tb.Observe(Request{Time: t0.Add(10 * time.Second), Addr: addr(2), UserAgent: "docker/25.0.0", Bytes: 5}) // 2 is the most recent now
	tb.Observe(Request{Time: t0.Add(11 * time.Second), Addr: addr(9), UserAgent: "docker/25.0.0"})           // drops 3
	s := tb.Summarize(t0.Add(time.Minute))
	if s.Known != 3 || s.Dropped != 3 {
		t.Fatalf("known %d dropped %d, want 3 and 3", s.Known, s.Dropped)
	}
	var got []string
	for _, n := range s.Recent {
		got = append(got, fmt.Sprintf("%s:%d/%d", n.Addr, n.Pulls, n.Bytes))
	}
	if want := "[10.0.0.9:0/0 10.0.0.2:1/15 10.0.0.4:1/10]"; fmt.Sprint(got) != want {
		t.Errorf("nodes %v, want %s", got, want)
	}
}

// TestTableWindows: nodes per window count addresses (one node with two
// engines is one node), and a node not seen for a day is quiet.
func TestTableWindows(t *testing.T) {
	t.Parallel()
	tb := New(DefaultMaxNodes, DefaultMaxArrivals)
	tb.Observe(Request{Time: t0.Add(-48 * time.Hour), Addr: addr(1), UserAgent: "containerd/1.7.0"})
	tb.Observe(Request{Time: t0.Add(-3 * time.Hour), Addr: addr(2), UserAgent: "docker/25.0.0"})
	tb.Observe(Request{Time: t0.Add(-time.Minute), Addr: addr(3), UserAgent: "docker/25.0.0"})
	tb.Observe(Request{Time: t0, Addr: addr(3), UserAgent: "skopeo/1.9.3"})
	tb.Observe(Request{Time: t0, UserAgent: "docker/25.0.0"}) // no address: not counted
	s := tb.Summarize(t0)
	if s.LastHour != 1 || s.LastDay != 2 || s.Known != 3 {
		t.Errorf("hour %d day %d known %d, want 1 2 3", s.LastHour, s.LastDay, s.Known)
	}
	if s.QuietCount != 1 || len(s.Quiet) != 1 || s.Quiet[0].Addr != addr(1) || s.Quiet[0].Engine.Name != Containerd {
		t.Errorf("quiet %+v, want only 10.0.0.1 (containerd)", s.Quiet)
	}
	if got := tb.Seen(t0, time.Hour); got != 1 {
		t.Errorf("Seen(1h) = %d, want 1", got)
	}
	if got := tb.Seen(t0, 24*time.Hour); got != 2 {
		t.Errorf("Seen(24h) = %d, want 2", got)
	}
}

// TestCanaryArrivals: a canary tag is kept with its first arrival's
// engine, the newest first, at most the maximum.
func TestCanaryArrivals(t *testing.T) {
	t.Parallel()
	tb := New(DefaultMaxNodes, 2)
	tb.Observe(Request{Time: t0, Addr: addr(1), UserAgent: "containerd/1.7.0", Pull: true, CanaryTag: "v-0000000000000001"})
	tb.Observe(Request{Time: t0.Add(time.Second), Addr: addr(2), UserAgent: "docker/25.0.1", Pull: true, CanaryTag: "v-0000000000000001"})
	a, ok := tb.Canary("v-0000000000000001")
	if !ok || a.Engine != (Engine{Containerd, "1.7.0"}) || a.Addr != addr(1) || !a.At.Equal(t0) {
		t.Errorf("arrival %+v %v, want the first (containerd from 10.0.0.1)", a, ok)
	}
	tb.Observe(Request{Time: t0.Add(2 * time.Second), Addr: addr(2), UserAgent: "docker/25.0.1", CanaryTag: "v-0000000000000002"})
	tb.Observe(Request{Time: t0.Add(3 * time.Second), Addr: addr(2), UserAgent: "docker/25.0.1", CanaryTag: "v-0000000000000003"})
	if _, ok := tb.Canary("v-0000000000000001"); ok {
		t.Error("the oldest arrival was kept beyond the maximum")
	}
	s := tb.Summarize(t0.Add(time.Minute))
	if len(s.Canaries) != 2 || s.Canaries[0].Tag != "v-0000000000000003" || s.Canaries[0].Engine.Name != Dockerd {
		t.Errorf("canaries %+v", s.Canaries)
	}
}

// TestExpected: fleet.expected from networks, addresses and a file; the
// expected addresses never seen are listed, each network says how many of
// its addresses were seen in the last day, and clients outside every
// entry are counted.
func TestExpected(t *testing.T) {
	t.Parallel()
	file := t.TempDir() + "/nodes.txt"
	if err := os.WriteFile(file, []byte("# CI nodes\n10.0.0.1\n10.0.0.2  # the second\n\n10.0.0.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ps, err := LoadExpected([]string{"10.0.1.0/24", file, "10.0.0.2", "::ffff:10.0.0.3"})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(ps); got != "[10.0.0.1/32 10.0.0.2/32 10.0.0.3/32 10.0.1.0/24]" {
		t.Errorf("LoadExpected = %s", got)
	}
	tb := New(DefaultMaxNodes, DefaultMaxArrivals)
	if s := tb.Summarize(t0); s.Expected != nil {
		t.Errorf("an expected section without fleet.expected: %+v", s.Expected)
	}
	tb.SetExpected(ps)
	tb.Observe(Request{Time: t0, Addr: addr(2), UserAgent: "docker/25.0.0"})                      // 10.0.0.2: expected
	tb.Observe(Request{Time: t0, Addr: addr(1<<8 | 7), UserAgent: "docker/25.0.0"})               // 10.0.1.7: in the network
	tb.Observe(Request{Time: t0, Addr: addr(2<<8 | 9), UserAgent: "docker/25.0.0"})               // 10.0.2.9: unexpected
	tb.Observe(Request{Time: t0.Add(-48 * time.Hour), Addr: addr(3), UserAgent: "docker/25.0.0"}) // seen, long ago
	e := tb.Summarize(t0).Expected
	if e == nil || e.Addresses != 3 || e.Networks != 1 || e.NeverSeenCount != 1 || fmt.Sprint(e.NeverSeen) != "[10.0.0.1]" ||
		len(e.InNetworks) != 1 || e.InNetworks[0].LastDay != 1 || e.Unexpected != 1 {
		t.Errorf("expected: %+v", e)
	}
	if _, err := LoadExpected([]string{t.TempDir() + "/missing"}); err == nil {
		t.Error("a missing file was accepted")
	}
	bad := t.TempDir() + "/bad.txt"
	_ = os.WriteFile(bad, []byte("10.0.0.1\nnode-7\n"), 0o644)
	if _, err := LoadExpected([]string{bad}); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a bad line: %v", err)
	}
}

// BenchmarkObserve is the fleet table's share of every answered request,
// with the table full.
func BenchmarkObserve(b *testing.B) {
	tb := New(DefaultMaxNodes, DefaultMaxArrivals)
	for i := range DefaultMaxNodes {
		tb.Observe(Request{Time: t0, Addr: addr(i), UserAgent: "docker/25.0.0"})
	}
	ua := `docker/20.10.24+dfsg1 go/go1.19.8 git-commit/5d6db84 kernel/6.1.0-18-amd64 os/linux arch/amd64 UpstreamClient(Docker-Client/20.10.24+dfsg1 \(linux\))`
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tb.Observe(Request{Time: t0, Addr: addr(i % DefaultMaxNodes), UserAgent: ua, Pull: true, Bytes: 1 << 20})
		i++
	}
}

// BenchmarkSummarize is /status's and the dashboard's read of a full table.
func BenchmarkSummarize(b *testing.B) {
	tb := New(DefaultMaxNodes, DefaultMaxArrivals)
	for i := range DefaultMaxNodes {
		tb.Observe(Request{Time: t0.Add(-time.Duration(i) * time.Minute), Addr: addr(i), UserAgent: "docker/25.0.0"})
	}
	b.ReportAllocs()
	for b.Loop() {
		tb.Summarize(t0)
	}
}
