package oidc

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// Cross-origin reads (CORS) of the protocol endpoints, for the pages of
// public clients (single-page apps), which call them with fetch:
//   - discovery and the JWKS are public: any origin reads them;
//   - the token and revocation endpoints answer a page of the origin of one
//     of the requesting public client's redirect URIs (its client_id in
//     the form), as Keycloak's web origins "+" (the redirect URIs' own);
//   - userinfo, whose request names no client, answers a page of the
//     origin of any public client's redirect URI.
//
// A confidential client is a server: its secret is never in a page, and
// its origins read nothing. Introspection is for resource servers: none.
// No credentials (cookies) are ever allowed: a page authenticates with
// what it holds (a code and its verifier, a token).

// AnyOrigin lets any page read what next answers (discovery, the JWKS).
func AnyOrigin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Expose-Headers", "Retry-After")
		next(w, r)
	}
}

// ClientOrigin lets a page of one of the requesting public client's
// redirect URIs' origins read what next answers (the token and revocation
// endpoints).
func (p *Provider) ClientOrigin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		if origin := r.Header.Get("Origin"); origin != "" {
			if id := requestClient(r); id != "" {
				c, err := p.Storage.Client(r.Context(), id)
				switch {
				case err == nil:
					if c.Public && originOf(c.RedirectURIs, origin) {
						allowOrigin(w, origin)
					}
				case !errors.Is(err, store.ErrNotFound) && p.publicOrigin(r.Context(), origin):
					// The client cannot be read (the database away): the
					// page may read the 503 and its Retry-After all the same.
					allowOrigin(w, origin)
				}
			}
		}
		next(w, r)
	}
}

// requestClient is the client a token or revocation request is made as,
// as fosite finds it: the Basic credentials' user, else the form's
// client_id; "" when they name two clients (no cross-origin read for
// such a request) or none.
func requestClient(r *http.Request) string {
	if r.ParseForm() != nil {
		return ""
	}
	id, _, basic := clientCredentials(r)
	if form := r.PostForm.Get("client_id"); basic && form != "" && form != id {
		return ""
	}
	return id
}

// allowOrigin lets a page of origin read the answer, and the headers that
// say why it was refused or when to try again.
func allowOrigin(w http.ResponseWriter, origin string) {
	w.Header().Set("Access-Control-Allow-Origin", origin)
	w.Header().Set("Access-Control-Expose-Headers", "WWW-Authenticate, Retry-After")
}

// PublicOrigin lets a page of any public client's redirect URIs' origins
// read what next answers (userinfo).
func (p *Provider) PublicOrigin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.allowPublicOrigin(w, r)
		next(w, r)
	}
}

// allowPublicOrigin lets a page of any public client's redirect URIs'
// origins read the answer to r.
func (p *Provider) allowPublicOrigin(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Origin")
	if origin := r.Header.Get("Origin"); origin != "" && p.publicOrigin(r.Context(), origin) {
		allowOrigin(w, origin)
	}
}

// RefusedInput lets a page read the answer refusing its request before it
// reached an endpoint (a repeated parameter, a body too large): any page
// for discovery and the JWKS, a page of any public client's redirect URIs'
// origins elsewhere (the request's client is not known yet; the answer
// says only what was wrong with the request). Introspection: none.
func (p *Provider) RefusedInput(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathDiscovery, PathJWKS:
		w.Header().Set("Access-Control-Allow-Origin", "*")
	case PathToken, PathRevoke, PathUserinfo:
		p.allowPublicOrigin(w, r)
	}
}

// Preflight answers a CORS preflight (OPTIONS) of an endpoint taking
// methods: allowed for a page of any public client's redirect URIs'
// origins, with the Authorization and Content-Type headers (a bearer
// token, a form); the request itself is then checked as above.
func (p *Provider) Preflight(methods string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Allow", "OPTIONS, "+methods)
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		method := r.Header.Get("Access-Control-Request-Method")
		if origin != "" && method != "" && strings.Contains(", "+methods+", ", ", "+method+", ") && p.publicOrigin(r.Context(), origin) {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", methods)
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			h.Set("Access-Control-Max-Age", "600")
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// originOf says whether origin (as a browser sends it) is the origin of
// one of the http(s) URIs uris.
func originOf(uris []string, origin string) bool {
	for _, raw := range uris {
		if webOrigin(raw) == origin {
			return true
		}
	}
	return false
}

// webOrigin is the origin of an http(s) URI as a browser writes it
// (scheme://host[:port]: the host in lower case, an IPv6 address in its
// shortest form, the port as a number and left out when it is the
// scheme's default); "" for another scheme, a URI that does not parse or
// a host outside ASCII (a browser sends its punycode, not compared: no
// cross-origin reads for such a client).
func webOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	for _, c := range host {
		if c > '~' {
			return ""
		}
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + a.String() + "]"
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return ""
		}
		if !(u.Scheme == "https" && n == 443 || u.Scheme == "http" && n == 80) {
			host += ":" + strconv.FormatUint(n, 10)
		}
	}
	return u.Scheme + "://" + host
}

// publicOrigins are the origins of the public clients' redirect URIs, read
// at most once per ClientTT (as a client change takes effect) by one
// request at a time, while the others use the set read before; a failed
// read is not tried again for a second.
type publicOrigins struct {
	mu      sync.Mutex
	set     map[string]bool
	fetched time.Time
	failed  time.Time
	refresh sync.Mutex // held by the request reading the clients
}

// cached is the set last read, and whether it is to be used as it is:
// read less than ttl ago, or a read failed less than a second ago.
func (po *publicOrigins) cached(ttl time.Duration) (map[string]bool, bool) {
	po.mu.Lock()
	defer po.mu.Unlock()
	return po.set, time.Since(po.fetched) < ttl || time.Since(po.failed) < time.Second
}

// publicOrigin says whether origin is one of a public client's redirect
// URIs' (by the set read before when the clients cannot be read now;
// false before they have been read once).
func (p *Provider) publicOrigin(ctx context.Context, origin string) bool {
	po := &p.origins
	set, fresh := po.cached(p.Storage.ClientTT)
	if fresh {
		return set[origin]
	}
	if !po.refresh.TryLock() {
		// Being read by another request: the set read before, or, before
		// the first read ends, no cross-origin read (rather than a queue
		// behind a read that may hang).
		return set[origin]
	}
	defer po.refresh.Unlock()
	if set, fresh = po.cached(p.Storage.ClientTT); fresh { // read meanwhile
		return set[origin]
	}
	began := time.Now()
	// Not the request's own context: a client that hangs up does not make
	// a failed read that every other request would back off from.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	cs, err := p.Storage.Store.ListClients(rctx)
	if err != nil {
		p.log.WarnContext(ctx, "cors: clients not read", "err", err)
		po.mu.Lock()
		po.failed = time.Now()
		po.mu.Unlock()
		return set[origin]
	}
	set = map[string]bool{}
	for _, c := range cs {
		if c.Public {
			for _, raw := range c.RedirectURIs {
				if o := webOrigin(raw); o != "" {
					set[o] = true
				}
			}
		}
	}
	po.mu.Lock()
	po.set, po.fetched = set, began // as old as the read's start
	po.mu.Unlock()
	return set[origin]
}
