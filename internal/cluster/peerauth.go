package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// PeerAuthHeader carries a replica's proof that it holds cluster.secret,
// without the secret itself: "t=<unix seconds>,sig=<hex>", sig being
// HMAC-SHA256(secret, method "\n" request URI "\n" t). A member that
// should not be one (an address written into Redis) learns nothing it can
// use elsewhere, and a captured request is good for one path for
// peerAuthSkew only.
const PeerAuthHeader = "X-Regcache-Peer-Auth"

// peerAuthSkew bounds the difference between the signer's clock and ours.
const peerAuthSkew = time.Minute

// PeerSignature is the signature of a request to uri (method, request URI
// with its query) made at t: what PeerAuthHeader carries.
func PeerSignature(secret, method, uri string, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(method + "\n" + uri + "\n" + ts))
	return "t=" + ts + ",sig=" + hex.EncodeToString(m.Sum(nil))
}

// signPeer signs req for the internal endpoint of another replica.
func (c *Cluster) signPeer(req *http.Request) {
	req.Header.Set(PeerAuthHeader, PeerSignature(c.secret, req.Method, req.URL.RequestURI(), time.Now()))
}

// verifyPeer reports whether r carries a signature made with this
// cluster's secret within peerAuthSkew of now.
func (c *Cluster) verifyPeer(r *http.Request, now time.Time) bool {
	ts, _, ok := strings.Cut(strings.TrimPrefix(r.Header.Get(PeerAuthHeader), "t="), ",")
	if !ok {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	at := time.Unix(sec, 0)
	if at.Before(now.Add(-peerAuthSkew)) || at.After(now.Add(peerAuthSkew)) {
		return false
	}
	want := PeerSignature(c.secret, r.Method, r.URL.RequestURI(), at)
	return hmac.Equal([]byte(r.Header.Get(PeerAuthHeader)), []byte(want))
}
