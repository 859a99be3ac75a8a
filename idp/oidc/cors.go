package oidc

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
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
		next(w, r)
	}
}

// ClientOrigin lets a page of one of the requesting public client's
// redirect URIs' origins read what next answers (the token and revocation
// endpoints).
func (p *Provider) ClientOrigin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" {
			w.Header().Add("Vary", "Origin")
			if r.ParseForm() == nil {
				if id := r.PostForm.Get("client_id"); id != "" {
					c, err := p.Storage.Client(r.Context(), id)
					if err == nil && c.Public && originOf(c.RedirectURIs, origin) {
						w.Header().Set("Access-Control-Allow-Origin", origin)
					}
				}
			}
		}
		next(w, r)
	}
}

// PublicOrigin lets a page of any public client's redirect URIs' origins
// read what next answers (userinfo).
func (p *Provider) PublicOrigin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" {
			w.Header().Add("Vary", "Origin")
			if p.publicOrigin(r.Context(), origin) {
				w.Header().Set("Access-Control-Allow-Origin", origin)
			}
		}
		next(w, r)
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
		origin := r.Header.Get("Origin")
		if origin != "" {
			h.Add("Vary", "Origin")
		}
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
// (scheme://host[:port], the default port left out; "" for another
// scheme or a URI that does not parse).
func webOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	host := strings.ToLower(u.Host)
	if port := u.Port(); (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		host = strings.TrimSuffix(host, ":"+port)
	}
	return u.Scheme + "://" + host
}

// publicOrigins are the origins of the public clients' redirect URIs, read
// at most once per ClientTT (as a client change takes effect).
type publicOrigins struct {
	mu      sync.Mutex
	set     map[string]bool
	fetched time.Time
}

// publicOrigin says whether origin is one of a public client's redirect
// URIs' (false when the clients cannot be read: no cross-origin read then).
func (p *Provider) publicOrigin(ctx context.Context, origin string) bool {
	po := &p.origins
	po.mu.Lock()
	set, fresh := po.set, time.Since(po.fetched) < p.Storage.ClientTT
	po.mu.Unlock()
	if set != nil && fresh {
		return set[origin]
	}
	cs, err := p.Storage.Store.ListClients(ctx) // not under the lock: a slow store holds no one else
	if err != nil {
		p.log.WarnContext(ctx, "cors: clients not read", "err", err)
		return false
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
	po.set, po.fetched = set, time.Now()
	po.mu.Unlock()
	return set[origin]
}
