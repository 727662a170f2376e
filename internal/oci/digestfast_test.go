package oci

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestSHA256FastPathAgrees: ParseDigest's fast path accepts a string
// exactly when go-digest's Parse accepts it as a sha256 digest, over
// hand-picked edge cases and a hundred thousand mutations of a valid one.
func TestSHA256FastPathAgrees(t *testing.T) {
	valid := "sha256:ec792cc9b38e0a51dac7f97d9054889c3f40ad2f3957611cae8ed6157b4483aa"
	cases := []string{valid, "", "sha256:", strings.ToUpper(valid), "sha256:" + strings.Repeat("0", 64),
		"sha256:" + strings.Repeat("f", 64), "sha256:" + strings.Repeat("g", 64), valid + "0", valid[:len(valid)-1],
		"sha512:" + strings.Repeat("a", 64), "SHA256:" + valid[7:], " " + valid, valid + "\n"}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := "0123456789abcdefABCDEFgz:-_. \x00\xff"
	for range 100_000 {
		b := []byte(valid)
		for range 1 + r.IntN(3) {
			b[r.IntN(len(b))] = alphabet[r.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		d, err := digest.Parse(s)
		slow := err == nil && d.Algorithm() == digest.SHA256
		if fast := sha256Hex(s); fast != slow {
			t.Fatalf("%q: fast path %v, go-digest %v (%v)", s, fast, slow, err)
		}
		if got, err := ParseDigest(s); slow && (err != nil || got != d) {
			t.Fatalf("ParseDigest(%q) = %q, %v; want %q", s, got, err, d)
		}
	}
}
