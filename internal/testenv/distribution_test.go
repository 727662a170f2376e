package testenv

import (
	"errors"
	"net/http"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestDistributionAuthModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		auth Auth
	}{
		{"none", AuthNone},
		{"htpasswd", AuthHtpasswd},
		{"token", AuthToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := NewDistribution(t, DistributionOptions{Auth: tt.auth, Private: []string{"library/multi"}})
			var auth authn.Authenticator = authn.Anonymous
			if tt.auth != AuthNone {
				auth = &authn.Basic{Username: d.Username, Password: d.Password}
			}
			imgs := Seed(t, d.Host, auth)

			got, err := crane.Digest(imgs.Single.Ref, crane.Insecure, crane.WithAuth(auth), crane.WithContext(t.Context()))
			if err != nil {
				t.Fatalf("crane digest: %v", err)
			}
			if got != string(imgs.Single.Digest) {
				t.Errorf("digest %s, want %s", got, imgs.Single.Digest)
			}
			img, err := crane.Pull(imgs.ManifestList.Ref, crane.Insecure, crane.WithAuth(auth), crane.WithContext(t.Context()))
			if err != nil {
				t.Fatalf("crane pull: %v", err)
			}
			if _, err := img.ConfigFile(); err != nil {
				t.Errorf("config of pulled image: %v", err)
			}

			// Anonymous access: allowed without auth, refused by htpasswd,
			// and per repository with tokens.
			_, errPublic := crane.Digest(imgs.Single.Ref, crane.Insecure, crane.WithContext(t.Context()))
			_, errPrivate := crane.Digest(imgs.ManifestList.Ref, crane.Insecure, crane.WithContext(t.Context()))
			switch tt.auth {
			case AuthNone:
				if errPublic != nil || errPrivate != nil {
					t.Errorf("anonymous pulls failed: %v, %v", errPublic, errPrivate)
				}
			case AuthHtpasswd:
				if statusOf(errPublic) != http.StatusUnauthorized {
					t.Errorf("anonymous pull: %v, want 401", errPublic)
				}
			case AuthToken:
				if errPublic != nil {
					t.Errorf("anonymous pull of a public repository: %v", errPublic)
				}
				if statusOf(errPrivate) != http.StatusUnauthorized {
					t.Errorf("anonymous pull of a private repository: %v, want 401", errPrivate)
				}
				if d.TokenRequests() == 0 {
					t.Error("no token requests counted")
				}
			}
		})
	}
}

func statusOf(err error) int {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode
	}
	return 0
}

func TestDistributionWrongPassword(t *testing.T) {
	t.Parallel()
	d := NewDistribution(t, DistributionOptions{Auth: AuthToken})
	_, err := crane.Catalog(d.Host, crane.Insecure, crane.WithContext(t.Context()),
		crane.WithAuth(&authn.Basic{Username: d.Username, Password: "wrong"}))
	if statusOf(err) != http.StatusUnauthorized {
		t.Errorf("catalog with a wrong password: %v, want 401", err)
	}
}

func TestDistributionStopStart(t *testing.T) {
	t.Parallel()
	d := NewDistribution(t, DistributionOptions{})
	imgs := Seed(t, d.Host, nil)
	pid := d.PID

	d.Stop()
	d.Stop() // twice is fine
	_, err := crane.Digest(imgs.Single.Ref, crane.Insecure, crane.WithContext(t.Context()))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("pull from a stopped registry: %v, want connection refused", err)
	}

	d.Start()
	if d.PID == pid {
		t.Errorf("PID unchanged after restart")
	}
	got, err := crane.Digest(imgs.Single.Ref, crane.Insecure, crane.WithContext(t.Context()))
	if err != nil || got != string(imgs.Single.Digest) {
		t.Errorf("after restart: %s, %v; want %s (same storage)", got, err, imgs.Single.Digest)
	}
}

// Distribution's proxy sends its credentials only to a bearer-token realm it
// found at startup (registry/proxy/proxyauth.go), never as basic auth to the
// remote, so the upstream here uses tokens and a private repository.
func TestDistributionProxy(t *testing.T) {
	t.Parallel()
	up := NewDistribution(t, DistributionOptions{Auth: AuthToken, Private: []string{"library/oci"}})
	imgs := Seed(t, up.Host, &authn.Basic{Username: up.Username, Password: up.Password})
	proxy := NewDistribution(t, DistributionOptions{ProxyRemoteURL: up.URL, ProxyUsername: up.Username, ProxyPassword: up.Password})

	ref := proxy.Host + "/" + imgs.OCIIndex.Repo + ":latest"
	got, err := crane.Digest(ref, crane.Insecure, crane.WithContext(t.Context()))
	if err != nil || got != string(imgs.OCIIndex.Digest) {
		t.Fatalf("digest through proxy: %s, %v; want %s", got, err, imgs.OCIIndex.Digest)
	}
	if _, err := crane.Pull(ref, crane.Insecure, crane.WithContext(t.Context())); err != nil {
		t.Errorf("pull through proxy: %v", err)
	}
}
