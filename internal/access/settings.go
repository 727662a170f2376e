package access

import (
	"net/netip"
	"strconv"
	"strings"
)

// Settings are the rules in force, as access holds them (for /status):
// after a reload they are the reloaded ones.
type Settings struct {
	Allow          []netip.Prefix `json:"allow"`
	TrustedProxies []netip.Prefix `json:"trustedProxies"`
	Private        string         `json:"private"`
	Htpasswd       string         `json:"htpasswd,omitempty"`
	// UsersWithPatterns counts the users whose repositories access.users limits.
	UsersWithPatterns int `json:"usersWithPatterns"`
}

// Settings reports the rules in force.
func (a *Access) Settings() Settings {
	r := a.cur()
	s := Settings{Allow: r.allow, TrustedProxies: r.trusted, Private: r.private, UsersWithPatterns: len(r.patterns)}
	if r.users != nil {
		s.Htpasswd = r.users.path
	}
	return s
}

// Options adds, by option key, the rules in force.
func (a *Access) Options(m map[string]string) {
	s := a.Settings()
	m["access.allow"], m["access.trusted_proxies"] = joinStrings(s.Allow), joinStrings(s.TrustedProxies)
	m["access.private"], m["access.htpasswd"] = s.Private, s.Htpasswd
	m["access.users"] = strconv.Itoa(s.UsersWithPatterns) + " users with patterns"
}

func joinStrings[T interface{ String() string }](ps []T) string {
	s := make([]string, 0, len(ps))
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}
