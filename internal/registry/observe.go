package registry

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/regcache/regcache/internal/mirror"
)

// Served is one answered request as an observer sees it: what the access
// log line says, as fields. Repo and ErrMessage may name private
// repositories; whoever shows them decides who may see them.
type Served struct {
	Time       time.Time
	Kind       string             // manifest, blob, tags, referrers, base; "" before parsing
	Method     string             // from a closed set (methodLabel)
	Cache      mirror.CacheResult // "" when the cache was not consulted
	Joined     bool               // a miss that joined another request's fill
	Status     int                // 0 when the response was aborted
	Bytes      int64              // body bytes sent
	Upstream   string             // the upstream's name, once routed
	Repo       string
	ErrCode    string // the spec's error code of an error answer
	ErrMessage string
	Stale      string // why a stale answer was served
	Tag        string // the tag of a manifest request, "" by digest
	// Client is the client's address (WithClientAddr), UserAgent its
	// User-Agent header as sent.
	Client    netip.Addr
	UserAgent string
}

// WithClientAddr sets how the client's address is read for observers
// (default: the peer's address), e.g. past trusted proxies.
func WithClientAddr(fn func(*http.Request) netip.Addr) Option {
	return func(s *Server) { s.clientAddr = fn }
}

// WithClientUser sets how the client's login is read (default: none),
// for the pull policy's audit lines.
func WithClientUser(fn func(*http.Request) string) Option {
	return func(s *Server) { s.clientUser = fn }
}

func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// WithObserver sets a function called once per answered request, after
// the response (default: none). It runs on the request's goroutine: keep it
// short.
func WithObserver(fn func(Served)) Option { return func(s *Server) { s.observe = fn } }

func (s *Server) observed(r *http.Request, ri *reqInfo, status int, bytes int64) {
	if s.observe == nil {
		return
	}
	client := peerAddr
	if s.clientAddr != nil {
		client = s.clientAddr
	}
	s.observe(Served{Time: time.Now(), Kind: ri.kind, Method: methodLabel(r.Method), Cache: ri.cache, Joined: ri.joined,
		Status: status, Bytes: bytes, Upstream: ri.upstream, Repo: ri.repo,
		ErrCode: ri.errCode, ErrMessage: ri.errMsg, Stale: ri.stale,
		Tag: ri.tag, Client: client(r), UserAgent: r.UserAgent()})
}
