package access

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/regcache/regcache/internal/canary"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// Authorize decides whether the request may read repo at the upstream named upName. It is the
// registry's Authorizer: it runs after routing and before any I/O, for
// manifests, tags, referrers and blobs alike, cached or not.
//
// A repository the upstream serves anonymously is everyone's. Any other is
// served under access.private=allow to everyone; under authenticated to
// logged-in users whose patterns match it (anonymous clients get a 401
// challenge, so they can log in); under deny to no one. Presented but wrong
// credentials always get a 401. Errors are *oci.Error.
func (a *Access) Authorize(w http.ResponseWriter, r *http.Request, upName, repo string) error {
	id := a.identityOf(r)
	rl := a.cur()
	if id.err != nil {
		return a.challenge(w, r, clientName(r, repo), id.err)
	}
	if upName == a.defaultUp && repo == canary.Repo {
		return nil // the mirror's own canary is everyone's: no upstream is asked
	}
	if rl.private == PrivateAllow {
		return nil
	}
	if id.user != "" && rl.private == PrivateAuthenticated && a.userMay(id.user, upName, repo) {
		return nil
	}
	ans, err := a.publicAnswer(r.Context(), upName, repo, r.URL.Path)
	if err != nil {
		return err
	}
	if ans.public {
		return nil
	}
	name := clientName(r, repo) // for the refusals below
	if ans.missing {
		// Not there even for the mirror's credentials: an honest 404, and
		// nothing from the cache (the repository may have been private).
		return oci.Errorf(oci.ErrNameUnknown, "repository %s not found at %s", name, upName)
	}
	switch {
	case rl.private == PrivateAuthenticated && id.user == "" && rl.users != nil:
		return a.challenge(w, r, name, nil)
	case rl.private == PrivateAuthenticated && id.user != "":
		return oci.Errorf(oci.ErrDenied, "user %q may not pull %s: it is not served anonymously by %s and matches none of the user's repository patterns", id.user, name, upName)
	default:
		return oci.Errorf(oci.ErrDenied, "%s is not served anonymously by %s, and this mirror serves only what the upstream serves anonymously (access.private: %s)", name, upName, rl.private)
	}
}

// clientName is the repository as the client named it in the path, for
// challenges and messages; repo when the path does not parse.
func clientName(r *http.Request, repo string) string {
	if p, err := oci.ParsePath(r.URL.Path); err == nil && p.Name != "" {
		return p.Name
	}
	return repo
}

// userMay reports whether user's patterns allow repo at the upstream. A
// user without patterns may read every repository. Patterns name
// repositories of the default upstream as the client does ("myorg/app",
// "library/alpine"), and those of other upstreams with the registry first
// ("ghcr.io/myorg/*").
func (a *Access) userMay(user, upName, repo string) bool {
	pats, ok := a.cur().patterns[user]
	if !ok {
		return true
	}
	full := upName + "/" + repo
	for _, p := range pats {
		first, _, _ := strings.Cut(p, "/")
		switch {
		case oci.IsRegistryHost(first):
			if match(p, full) {
				return true
			}
		case upName == a.defaultUp && match(p, repo):
			return true
		}
	}
	return false
}

// match reports whether name matches pattern, where "*" matches any run of
// characters, "/" included.
func match(pattern, name string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == name
	}
	if !strings.HasPrefix(name, parts[0]) {
		return false
	}
	name = name[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(name, p)
		if i < 0 {
			return false
		}
		name = name[i+len(p):]
	}
	return strings.HasSuffix(name, parts[len(parts)-1])
}

func checkPattern(p string) error {
	if p == "" || strings.ContainsAny(p, " \t@?#\\") {
		return fmt.Errorf("invalid repository pattern %q (want e.g. myorg/*)", p)
	}
	return nil
}

// isPublic reports whether the upstream serves repo to anonymous clients,
// asking it with an anonymous client (tags list, which needs pull access
// and costs no pull on Docker Hub). Answers are remembered per upstream and
// repository; when the upstream cannot be asked the last answer is used
// however old, and without one the request fails closed.
func (a *Access) isPublic(ctx context.Context, upName, repo string) (bool, error) {
	ans, err := a.publicAnswer(ctx, upName, repo, "")
	return ans.public, err
}

// publicAnswer is isPublic with the "missing even for the mirror" case,
// for the request at path (its reference is asked about when the
// repository's tag list says nothing). Public and private are facts of the
// repository and remembered for it; "missing" is remembered for the
// reference only.
//
// For an upstream with a fallback chain, each credentialed member is asked
// the same of its own copy, since it may answer in the upstream's place:
// the repository is public only if every such member serves it
// anonymously too, or does not have it at all.
func (a *Access) publicAnswer(ctx context.Context, upName, repo, path string) (publicAnswer, error) {
	st := a.upstreams[upName]
	if st == nil {
		return publicAnswer{public: true}, nil
	}
	ans := publicAnswer{public: true} // the mirror itself reads anonymously
	if st.credentialed {
		var err error
		if ans, err = a.linkAnswer(ctx, upName, st, repo, path); err != nil || !ans.public {
			return ans, err
		}
	}
	for _, m := range st.members {
		mans, err := a.linkAnswer(ctx, m.name, m.st, repo, path)
		if err != nil {
			return publicAnswer{}, err
		}
		if !mans.public && !mans.missing {
			return publicAnswer{}, nil // private at a member that may answer for it
		}
	}
	return ans, nil
}

// linkAnswer is publicAnswer for one credentialed upstream alone.
//
// path is the request's URL path ("" for none), parsed only when the
// repository's answer is not remembered: a warm hit on a known public
// repository parses nothing and builds no key (issue 28).
func (a *Access) linkAnswer(ctx context.Context, upName string, st *upstreamState, repo, path string) (publicAnswer, error) {
	st.mu.Lock()
	last, known := st.answers[repo]
	st.mu.Unlock()
	if known && a.now().Sub(last.at) < a.rememberOK {
		return last, nil
	}
	var req oci.Path
	if path != "" {
		req, _ = oci.ParsePath(path) // parsed before: the registry routed it
	}
	refKey := repo + "\x00" + refString(req)
	st.mu.Lock()
	gone, goneKnown := st.answers[refKey]
	st.mu.Unlock()
	if goneKnown && a.now().Sub(gone.at) < rememberMissing {
		return gone, nil
	}
	v, err, _ := st.flights.Do(refKey, func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return probe(cctx, st.anon, st.cred, repo, req)
	})
	if err != nil {
		if known {
			a.log.Warn("cannot ask the upstream whether a repository is public; using the last answer",
				slog.String("upstream", upName), slog.String("repository", repo), slog.Bool("public", last.public), slog.Any("error", err))
			return last, nil
		}
		if ra, ok := upstream.IsTooManyRequests(err); ok {
			return publicAnswer{}, &oci.Error{Code: oci.ErrTooManyRequests, RetryAfter: ra,
				Message: "cannot check whether the repository is public: the upstream's rate limit is exhausted"}
		}
		return publicAnswer{}, oci.Errorf(oci.ErrUnavailable, "cannot check whether %s is public at %s: %v", repo, upName, err)
	}
	ans := v.(publicAnswer)
	ans.at = a.now()
	key := repo
	if ans.missing {
		key = refKey
	}
	st.mu.Lock()
	if len(st.answers) > 50000 {
		clear(st.answers)
	}
	st.answers[key] = ans
	st.mu.Unlock()
	return ans, nil
}

// refString names what a request asks for, for remembering "missing".
func refString(p oci.Path) string {
	switch p.Kind {
	case oci.KindManifest:
		return "manifest:" + p.Reference.String()
	case oci.KindBlob:
		return "blob:" + p.Digest.String()
	case oci.KindReferrers:
		return "referrers:" + p.Digest.String()
	}
	return "tags"
}

// headOf returns a HEAD of what req asks for, or nil for requests without
// a reference (tag lists).
func headOf(repo string, req oci.Path) func(context.Context, *upstream.Client) error {
	switch req.Kind {
	case oci.KindManifest:
		return func(ctx context.Context, c *upstream.Client) error {
			_, err := c.ManifestHead(ctx, repo, req.Reference, oci.ManifestMediaTypes)
			return err
		}
	case oci.KindReferrers:
		return func(ctx context.Context, c *upstream.Client) error {
			_, err := c.ManifestHead(ctx, repo, oci.Reference{Digest: req.Digest}, oci.ManifestMediaTypes)
			return err
		}
	case oci.KindBlob:
		return func(ctx context.Context, c *upstream.Client) error {
			_, err := c.BlobHead(ctx, repo, req.Digest)
			return err
		}
	}
	return nil
}

// rememberMissing is how long "the repository does not exist, even for the
// mirror's credentials" is trusted: a repository created later, perhaps
// private, is looked at again soon.
const rememberMissing = 30 * time.Second

// probe asks anonymously for one tag of repo. 2xx is public; 401 and 403
// are private. A 404 says little: a private repository hidden as missing,
// a repository pushed by digest only (Distribution lists no tags for it),
// or nothing at all. Then what the request asks for is asked about, first
// anonymously (2xx: public) and then with the mirror's own credentials:
// 2xx there means private; 404 there too means missing, and Authorize
// answers 404 itself, so containerd falls back to its next host and
// nothing cached for a reference that was deleted or whose access was lost
// is served. Any other failure is an error.
func probe(ctx context.Context, anon, cred *upstream.Client, repo string, req oci.Path) (publicAnswer, error) {
	_, err := anon.Tags(ctx, repo, "n=1")
	if err == nil {
		return publicAnswer{public: true}, nil
	}
	notFound, ok := refused(err)
	switch {
	case !ok:
		return publicAnswer{}, err
	case !notFound:
		return publicAnswer{}, nil
	}
	head := headOf(repo, req)
	if head != nil {
		err := head(ctx, anon)
		if err == nil {
			return publicAnswer{public: true}, nil
		}
		notFound, ok := refused(err)
		switch {
		case !ok:
			return publicAnswer{}, err
		case !notFound:
			return publicAnswer{}, nil
		}
	}
	if cred == nil {
		return publicAnswer{}, nil
	}
	var cerr error
	if head != nil {
		cerr = head(ctx, cred)
	} else {
		_, cerr = cred.Tags(ctx, repo, "n=1")
	}
	if upstream.IsNotFound(cerr) {
		return publicAnswer{missing: true}, nil
	}
	if _, ok := refused(cerr); cerr != nil && !ok {
		return publicAnswer{}, cerr
	}
	return publicAnswer{}, nil // the mirror's account sees it; anonymous clients do not
}

// refused reports whether err is the upstream refusing an anonymous
// client, and whether that refusal was a 404.
func refused(err error) (notFound, ok bool) {
	switch c, _ := upstream.Classify(err); c {
	case upstream.NotFound:
		return true, true
	case upstream.Refused, upstream.LoginRefused:
		return false, true
	}
	return false, false
}
