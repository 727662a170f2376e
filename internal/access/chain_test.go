package access

import (
	"net/http/httptest"
	"testing"
	"time"
)

// TestChainWithCredentialedMember: an anonymous upstream holds nothing
// private, unless a member of its fallback chain reads with credentials:
// that member may answer in its place, so a repository private there is
// private for the whole chain (access.private applies), and one it serves
// anonymously, or does not have, stays public.
func TestChainWithCredentialedMember(t *testing.T) {
	t.Parallel()
	member := httptest.NewServer(&fakeUpstream{public: map[string]bool{"library/pub": true}})
	t.Cleanup(member.Close)
	primary := httptest.NewServer(&fakeUpstream{public: map[string]bool{"library/pub": true, "team/secret": true}})
	t.Cleanup(primary.Close)
	tests := []struct {
		name string
		ups  []Upstream
		repo string
		want int
	}{
		{"anonymous chain member: public", []Upstream{
			{Name: "docker.io", URL: primary.URL, Fallback: []string{"member.test"}},
			{Name: "member.test", URL: member.URL}}, "team/secret", 200},
		{"credentialed member, private there: private", []Upstream{
			{Name: "docker.io", URL: primary.URL, Fallback: []string{"member.test"}},
			{Name: "member.test", URL: member.URL, Credentialed: true}}, "team/secret", 403},
		{"credentialed member, public there: public", []Upstream{
			{Name: "docker.io", URL: primary.URL, Fallback: []string{"member.test"}},
			{Name: "member.test", URL: member.URL, Credentialed: true}}, "library/pub", 200},
		{"no chain: an anonymous upstream holds nothing private", []Upstream{
			{Name: "docker.io", URL: primary.URL},
			{Name: "member.test", URL: member.URL, Credentialed: true}}, "team/secret", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := New(Config{Private: PrivateDeny, Upstreams: tt.ups}, WithRemember(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/v2/"+tt.repo+"/manifests/latest", nil)
			r.Host = "m:1"
			status := 200
			if err := a.Authorize(httptest.NewRecorder(), r, "docker.io", tt.repo); err != nil {
				status = err.(interface{ HTTPStatus() int }).HTTPStatus()
			}
			if status != tt.want {
				t.Errorf("anonymous GET of docker.io/%s: %d, want %d", tt.repo, status, tt.want)
			}
		})
	}
}
