package oidc

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// A refresh request narrowed to fewer scopes stores its access token with
// those scopes and their claims, and its refresh token with the grant's;
// without a scope, or with the grant's own, the request is left as it is.
func TestNarrowedRefreshKeepsTheGrant(t *testing.T) {
	ctx := t.Context()
	st := testenv.SQLiteStore(t)
	if err := st.CreateClient(ctx, &store.Client{ID: "c1", Name: "C1", RedirectURIs: []string{"http://127.0.0.1/cb"}}); err != nil {
		t.Fatal(err)
	}
	s := NewStorage(st)
	grant := fosite.Arguments{"openid", "email", "profile", "offline_access"}
	refreshRequest := func(scope string) (*fosite.AccessRequest, *http.Request) {
		sess := NewSession()
		sess.Subject = "user-1"
		sess.Claims.Extra = map[string]any{"email": "u@example.com", "email_verified": true, "name": "U", "locale": "ja", "sid": "sid-1"}
		sess.SetExpiresAt(fosite.AccessToken, time.Now().Add(time.Hour).Truncate(time.Second))
		sess.SetExpiresAt(fosite.RefreshToken, time.Now().Add(24*time.Hour).Truncate(time.Second))
		ar := fosite.NewAccessRequest(sess)
		ar.ID, ar.Client, ar.GrantTypes = "req-1", client{Client: &store.Client{ID: "c1"}}, fosite.Arguments{"refresh_token"}
		for _, sc := range grant {
			ar.GrantScope(sc)
		}
		r := &http.Request{PostForm: url.Values{"grant_type": {"refresh_token"}}}
		if scope != "" {
			r.PostForm.Set("scope", scope)
		}
		return ar, r
	}
	stored := func(kind, sig string) (fosite.Arguments, map[string]any) {
		t.Helper()
		sess := NewSession()
		var (
			req fosite.Requester
			err error
		)
		if kind == store.KindAccessToken {
			req, err = s.GetAccessTokenSession(ctx, sig, sess)
		} else {
			req, err = s.GetRefreshTokenSession(ctx, sig, sess)
		}
		if err != nil {
			t.Fatal(err)
		}
		return req.GetGrantedScopes(), sess.Claims.Extra
	}

	ar, r := refreshRequest("openid email offline_access")
	nctx, err := narrowRefreshScope(ctx, r, ar)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessTokenSession(nctx, "at-1", ar); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRefreshTokenSession(nctx, "rt-1", "at-1", ar); err != nil {
		t.Fatal(err)
	}
	scopes, claims := stored(store.KindAccessToken, "at-1")
	if !slices.Equal(scopes, fosite.Arguments{"openid", "email", "offline_access"}) || claims["name"] != nil || claims["locale"] != nil ||
		claims["email"] == nil || claims["email_verified"] == nil || claims["sid"] == nil {
		t.Errorf("access token: scopes %v, ID token claims %v; want the scopes asked for and their claims", scopes, claims)
	}
	scopes, claims = stored(store.KindRefreshToken, "rt-1")
	if !slices.Equal(scopes, grant) || claims["name"] == nil || claims["locale"] == nil || claims["email"] == nil {
		t.Errorf("refresh token: scopes %v, ID token claims %v; want the grant's", scopes, claims)
	}

	for _, scope := range []string{"", "offline_access profile email openid"} {
		ar, r := refreshRequest(scope)
		nctx, err := narrowRefreshScope(ctx, r, ar)
		if err != nil || nctx != ctx || !slices.Equal(ar.GetGrantedScopes(), grant) || len(ar.Session.(*Session).Claims.Extra) != 5 {
			t.Errorf("scope %q: %v, request %v narrowed to %v", scope, err, grant, ar.GetGrantedScopes())
		}
	}
	for _, scope := range []string{"openid phone", "openid unknown", "openid EMAIL"} {
		ar, r := refreshRequest(scope)
		if _, err := narrowRefreshScope(ctx, r, ar); !errors.Is(err, fosite.ErrInvalidScope) {
			t.Errorf("scope %q: %v, want invalid_scope", scope, err)
		}
	}
}
