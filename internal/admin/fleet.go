package admin

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regcache/regcache/internal/canary"
	"github.com/regcache/regcache/internal/fleet"
	"github.com/regcache/regcache/internal/httpguard"
	"github.com/regcache/regcache/internal/registry"
	"github.com/regcache/regcache/internal/ui"
)

// observeFleet records s in the fleet table (every answered request, the
// canary's included) and reports whether it was the canary's, which the
// request statistics leave out (it is no content: neither a hit nor a
// miss, and no pull saved).
func (a *Admin) observeFleet(s registry.Served) (isCanary bool) {
	isCanary = s.Repo == canary.Repo && a.isDefault(s.Upstream)
	if a.d.Fleet == nil {
		return isCanary
	}
	if s.Kind != "" && s.Kind != "base" && s.Status > 0 && s.Status < 400 {
		req := fleet.Request{Time: s.Time, Addr: s.Client, UserAgent: s.UserAgent, Bytes: s.Bytes,
			Pull: s.Kind == "manifest" && s.Tag != ""}
		if isCanary && req.Pull && canary.ValidTag(s.Tag) {
			req.CanaryTag = s.Tag
		}
		a.d.Fleet.Observe(req)
	}
	return isCanary
}

// isDefault reports whether name is the default upstream (the first).
// It builds the upstreams' view (a lock of each upstream's client), so
// observeFleet asks it only of the canary's repository, not of every
// answered request (issue 28).
func (a *Admin) isDefault(name string) bool {
	ups := a.src.Upstreams()
	return len(ups) > 0 && name == ups[0].Name
}

// registerFleet exports regcache_fleet_nodes{window}.
func (a *Admin) registerFleet() {
	for _, w := range fleet.Windows {
		span := w.Span
		a.d.Metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_fleet_nodes",
			Help:        "Client addresses the mirror served within the window (the fleet table's bound permitting).",
			ConstLabels: prometheus.Labels{"window": w.Label}},
			func() float64 { return float64(a.d.Fleet.Seen(time.Now(), span)) }))
	}
}

// fleetStatus is /status's fleet section (nil without a fleet table).
func (a *Admin) fleetStatus() *fleet.Summary {
	if a.d.Fleet == nil {
		return nil
	}
	s := a.d.Fleet.Summarize(time.Now())
	return &s
}

// withoutAddrs drops the client addresses from the fleet section, for
// callers who may not see private data.
func withoutAddrs(s *fleet.Summary) *fleet.Summary {
	if s == nil {
		return nil
	}
	out := *s
	strip := func(ns []fleet.Node) []fleet.Node {
		c := make([]fleet.Node, len(ns))
		for i, n := range ns {
			n.Addr = netip.Addr{}
			c[i] = n
		}
		return c
	}
	out.Quiet, out.Recent = strip(s.Quiet), strip(s.Recent)
	if s.Expected != nil {
		e := *s.Expected
		e.NeverSeen, e.InNetworks = []netip.Addr{}, []fleet.NetworkSeen{}
		out.Expected = &e
	}
	out.Canaries = make([]fleet.Arrival, len(s.Canaries))
	for i, c := range s.Canaries {
		c.Addr = netip.Addr{}
		out.Canaries[i] = c
	}
	return &out
}

// CanaryAnswer is GET /fleet/canary's answer: whether a canary tag
// arrived, and through which engine. It carries no address: anyone who
// can reach the admin listener may ask, and the tag (64 random bits) is
// all they need; SameAddress says whether the arrival came from the
// address asking, which is the node's own check.
type CanaryAnswer struct {
	Tag         string       `json:"tag"`
	Arrived     bool         `json:"arrived"`
	Engine      fleet.Engine `json:"engine,omitzero"`
	At          time.Time    `json:"at,omitzero"`
	SameAddress bool         `json:"sameAddress"`
}

// serveCanary answers GET /fleet/canary?tag=.
func (a *Admin) serveCanary(w http.ResponseWriter, r *http.Request) {
	tag := r.URL.Query().Get("tag")
	if !canary.ValidTag(tag) {
		http.Error(w, "tag: want v- and 16 lowercase hex digits, as regcache client ... status --verify makes them", http.StatusBadRequest)
		return
	}
	ans := CanaryAnswer{Tag: tag}
	if a.d.Fleet != nil {
		if arr, ok := a.d.Fleet.Canary(tag); ok {
			ans.Arrived, ans.Engine, ans.At = true, arr.Engine, arr.At
			ans.SameAddress = arr.Addr == httpguard.PeerAddr(r)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(ans)
}

// fleetCard is the dashboard's nodes card.
func fleetCard(s *fleet.Summary) ui.Fleet {
	if s == nil {
		return ui.Fleet{}
	}
	f := ui.Fleet{LastHour: s.LastHour, LastDay: s.LastDay, Quiet: s.QuietCount}
	if e := s.Expected; e != nil {
		f.Expected, f.NeverSeen = true, e.NeverSeenCount
	}
	if len(s.Canaries) > 0 {
		f.Canary, f.CanaryTime = engineText(s.Canaries[0].Engine), s.Canaries[0].At
	}
	return f
}

func engineText(e fleet.Engine) string {
	if e.Version == "" {
		return e.Name
	}
	return e.Name + " " + e.Version
}
