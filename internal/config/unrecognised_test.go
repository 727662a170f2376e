package config

import (
	"strings"
	"testing"
)

// TestUnrecognisedWithCredentials: with upstream credentials, a
// Distribution variable or config.yml key that Distribution does not have
// (a typo of the upstream's URL above all) stops the load, naming the
// closest known name, so the password never goes to Docker Hub instead of
// the registry meant. Without credentials it stays a warning; settings
// Distribution has but regcache does not use, and the variables a
// platform sets for a service called registry, stay warnings too.
func TestUnrecognisedWithCredentials(t *testing.T) {
	t.Parallel()
	creds := map[string]string{"REGISTRY_PROXY_USERNAME": "ci", "REGISTRY_PROXY_PASSWORD": "hub-secret"}
	with := func(extra map[string]string) map[string]string {
		env := map[string]string{}
		for k, v := range creds {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}
	tests := []struct {
		name     string
		yaml     string
		env      map[string]string
		wantErr  []string // "" when it loads
		warnings int
	}{
		{name: "variable typo with credentials", env: with(map[string]string{"REGISTRY_PROXY_REMOTE_URL": "https://ghcr.io"}),
			wantErr: []string{"refusing to start with upstream credentials", "environment variable REGISTRY_PROXY_REMOTE_URL (did you mean REGISTRY_PROXY_REMOTEURL?)", "https://registry-1.docker.io"}},
		{name: "variable near miss of a mapped one", env: with(map[string]string{"REGISTRY_HTTP_ADR": ":80"}),
			wantErr: []string{"REGISTRY_HTTP_ADR (did you mean REGISTRY_HTTP_ADDR?)"}},
		{name: "variable of no section", env: with(map[string]string{"REGISTRY_PROXYREMOTEURL": "https://ghcr.io"}),
			wantErr: []string{"REGISTRY_PROXYREMOTEURL (did you mean REGISTRY_PROXY_REMOTEURL?)"}},
		{name: "variable typo without credentials", env: map[string]string{"REGISTRY_PROXY_REMOTE_URL": "https://ghcr.io"}, warnings: 1},
		{name: "Distribution settings regcache does not use", env: with(map[string]string{"REGISTRY_HTTP_SECRET": "x", "REGISTRY_STORAGE_DELETE_ENABLED": "true",
			"REGISTRY_PROXY_REMOTEURL": "https://ghcr.io"}), warnings: 1},
		{name: "a Kubernetes service called registry", env: with(map[string]string{"REGISTRY_PORT": "tcp://10.0.0.1:5000", "REGISTRY_SERVICE_HOST": "10.0.0.1",
			"REGISTRY_PORT_5000_TCP_ADDR": "10.0.0.1"}), warnings: 1},
		{name: "config.yml key typo with credentials", yaml: "version: 0.1\nproxy:\n  remote_url: https://ghcr.io\n  username: ci\n  password: hub-secret\n",
			wantErr: []string{"key proxy.remote_url (did you mean proxy.remoteurl?)"}},
		{name: "config.yml typo with the password file from the environment", yaml: "version: 0.1\nprox:\n  remoteurl: https://ghcr.io\n",
			env: map[string]string{"REGCACHE_USERNAME": "ci", "REGCACHE_PASSWORD": "hub-secret"}, wantErr: []string{"key prox (did you mean proxy?)"}},
		{name: "config.yml default keys of the registry image", yaml: "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: /var/lib/registry\nhttp:\n  addr: :5000\n  headers:\n    X-Content-Type-Options: [nosniff]\nhealth:\n  storagedriver:\n    enabled: true\nproxy:\n  remoteurl: https://ghcr.io\n  username: ci\n  password: hub-secret\n",
			warnings: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadWith(t, tt.yaml, tt.env)
			if len(tt.wantErr) == 0 {
				if err != nil || len(c.Warnings) != tt.warnings {
					t.Fatalf("load: %v, warnings %q (want %d)", err, c.Warnings, tt.warnings)
				}
				return
			}
			if err == nil {
				t.Fatalf("loaded (upstream %s), want a refusal", c.Upstreams[0].URL)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hub-secret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}
