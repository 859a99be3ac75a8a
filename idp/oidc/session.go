package oidc

import (
	"slices"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

// Session is what fosite keeps with every code and token: the ID token
// claims, fixed when the user authorised the request, plus what userinfo
// needs later. It is serialised as JSON into the store.
type Session struct {
	*openid.DefaultSession `json:"oidc"`
	// SID is the SSO session's public id (the "sid" claim).
	SID string `json:"sid,omitempty"`
	// UserinfoClaims are claims asked for individually with the "claims"
	// request parameter, on top of those the granted scopes give.
	UserinfoClaims []string `json:"userinfo_claims,omitempty"`
}

// NewSession returns an empty session, ready for fosite to fill.
func NewSession() *Session {
	return &Session{DefaultSession: &openid.DefaultSession{
		Claims:  &jwt.IDTokenClaims{},
		Headers: &jwt.Headers{},
	}}
}

// Identity is how the user authenticated, as the SSO session recorded it.
type Identity struct {
	UserID   string
	SID      string
	AuthTime time.Time
	AMR      []string
	// RequestedAt is when the relying party's request arrived (before any
	// login page), so fosite can check prompt=login and max_age against
	// AuthTime.
	RequestedAt time.Time
}

// Clone implements fosite.Session, keeping this type (the embedded
// DefaultSession's Clone would return a *openid.DefaultSession).
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	c := *s
	if s.DefaultSession != nil {
		c.DefaultSession = s.DefaultSession.Clone().(*openid.DefaultSession)
	}
	c.UserinfoClaims = slices.Clone(s.UserinfoClaims)
	return &c
}
