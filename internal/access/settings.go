package access

import "net/netip"

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
