package oidc

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/ory/fosite"
)

// A refresh request may name a narrower scope than its grant (RFC 6749 6),
// which fosite v0.49 ignores. narrowRefreshScope applies it to the request
// fosite parsed, before the response is made. As with fosite's master
// branch (so Hydra) and Keycloak, the new access token, and so what
// userinfo and introspection answer for it, gets only the scopes asked
// for, while the new refresh token keeps those of the one presented ("the
// refresh token scope MUST be identical"), so a later refresh may ask for
// the whole grant again; a scope without offline_access still gets the new
// refresh token (fosite master checks offline_access on the token
// presented only). The refreshed ID token also loses the claims of the
// scopes left out, and a scope without openid gets none, as any token
// response without openid (fosite's OpenID Connect refresh handler looks
// at the granted scopes).

// keptGrantKey is where the token request's context holds the grant's
// scopes and session, for the new refresh token, while the request is
// narrowed.
type keptGrantKey struct{}

type keptGrant struct {
	scopes  fosite.Arguments
	session fosite.Session
}

// narrowRefreshScope refuses a refresh request whose scope names a scope
// the grant does not hold (invalid_scope; scopes compare exactly, as the
// provider's scope strategy does), and narrows the request to the scopes
// it names. The returned context then carries the grant for
// CreateRefreshTokenSession; without a scope, or with all of the grant's,
// nothing changes.
func narrowRefreshScope(ctx context.Context, r *http.Request, ar fosite.AccessRequester) (context.Context, error) {
	if !ar.GetGrantTypes().ExactOne("refresh_token") {
		return ctx, nil
	}
	asked := strings.Fields(r.PostForm.Get("scope"))
	if len(asked) == 0 {
		return ctx, nil
	}
	granted := ar.GetGrantedScopes()
	for _, sc := range asked {
		if !slices.Contains(granted, sc) {
			return ctx, fosite.ErrInvalidScope.WithHintf("The scope %q was not granted to this refresh token.", sc)
		}
	}
	kept := make(fosite.Arguments, 0, len(granted))
	for _, sc := range granted {
		if slices.Contains(asked, sc) {
			kept = append(kept, sc)
		}
	}
	if len(kept) == len(granted) {
		return ctx, nil
	}
	req, _ := ar.(*fosite.AccessRequest)
	sess, _ := ar.GetSession().(*Session)
	if req == nil || sess == nil || sess.Claims == nil {
		return ctx, fosite.ErrServerError.WithDebug("The refresh request cannot be narrowed.")
	}
	grant := &keptGrant{scopes: granted, session: sess.Clone()}
	req.GrantedScope = kept
	// The ID token's claims were fixed at the authorization (Authorize):
	// those of a scope left out go, and so do the claims asked for by name
	// with the "claims" parameter that userinfo would release (the new
	// access token's session): a claim asked for by name goes with its
	// scope, in both, as the ID token's stored claims do not tell them
	// apart.
	leftOut := func(claim string) bool {
		sc, ok := claimScope[claim]
		return ok && slices.Contains(granted, sc) && !slices.Contains(kept, sc)
	}
	extra := make(map[string]any, len(sess.Claims.Extra))
	for claim, v := range sess.Claims.Extra {
		if !leftOut(claim) {
			extra[claim] = v
		}
	}
	sess.Claims.Extra = extra
	sess.UserinfoClaims = slices.DeleteFunc(slices.Clone(sess.UserinfoClaims), leftOut)
	return context.WithValue(ctx, keptGrantKey{}, grant), nil
}

// refreshTokenRequest is r as the new refresh token stores it: with the
// grant's scopes and session when the request was narrowed.
func refreshTokenRequest(ctx context.Context, r fosite.Requester) fosite.Requester {
	if g, _ := ctx.Value(keptGrantKey{}).(*keptGrant); g != nil {
		return grantRequester{Requester: r, grant: g}
	}
	return r
}

type grantRequester struct {
	fosite.Requester
	grant *keptGrant
}

func (g grantRequester) GetGrantedScopes() fosite.Arguments { return g.grant.scopes }
func (g grantRequester) GetSession() fosite.Session         { return g.grant.session }
