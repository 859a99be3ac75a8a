package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/store"
)

// TestAuthorizeRacingRevokeConsent: the user takes a third-party app's
// access back on My Page after the authorization endpoint read the user's
// consent and before it stored the code (the app's silent prompt=none
// request, running while the user clicks). The app must not come out of
// it with a code that still works: My Page no longer lists the app, so the
// user could not take that access back again.
func TestAuthorizeRacingRevokeConsent(t *testing.T) {
	e := newFuzzEnv(t)
	ctx := context.Background()
	const partner = "partner"
	_, secret, err := e.app.CreateClient(ctx, app.NewClient{ID: partner, Name: "Partner", RedirectURIs: []string{fuzzRedirect}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.Store.PutConsent(ctx, e.user.ID, partner, []string{"openid", "offline_access"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	revoked := e.loginAndHookCode(t, func(st store.Store) {
		if err := st.RevokeConsent(ctx, e.user.ID, partner); err != nil {
			t.Error(err)
		}
	})
	q := url.Values{"client_id": {partner}, "response_type": {"code"}, "redirect_uri": {fuzzRedirect},
		"scope": {"openid offline_access"}, "state": {"state-state"}, "nonce": {"nonce-nonce-nonce"}, "prompt": {"none"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	rec := e.serve(httptest.NewRequest(http.MethodGet, origin+oidc.PathAuthorize+"?"+q.Encode(), nil))
	loc, err := url.Parse(rec.Header().Get("Location"))
	if err != nil || !*revoked {
		t.Fatalf("authorize: %d %q, revoked before the code %v", rec.Code, rec.Header().Get("Location"), revoked)
	}
	code := loc.Query().Get("code")
	if code == "" {
		if got := loc.Query().Get("error"); got != "consent_required" {
			t.Fatalf("refused with %q, want consent_required (the consent is gone, the session is not)", got)
		}
		return
	}
	if tok := e.exchangeCode(partner, secret, code); tok.Code == http.StatusOK {
		t.Fatalf("the app's access was taken back, yet a code issued meanwhile gave it tokens:\n%s", tok.Body)
	}
}

// TestAuthorizeWithoutScope: an app cannot get a code by asking for no
// scope at all (a third-party app the user never allowed would otherwise
// get one silently: its tokens name the user at introspection, and My Page
// would not list it among the apps with access); it gets invalid_scope.
func TestAuthorizeWithoutScope(t *testing.T) {
	e := newFuzzEnv(t)
	if _, _, err := e.app.CreateClient(context.Background(), app.NewClient{ID: "stranger", Name: "Stranger", RedirectURIs: []string{fuzzRedirect}}); err != nil {
		t.Fatal(err)
	}
	e.loginAndHookCode(t, func(store.Store) {})
	for _, scope := range []string{"", " "} {
		q := url.Values{"client_id": {"stranger"}, "response_type": {"code"}, "redirect_uri": {fuzzRedirect},
			"scope": {scope}, "state": {"state-state"}, "prompt": {"none"},
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
		rec := e.serve(httptest.NewRequest(http.MethodGet, origin+oidc.PathAuthorize+"?"+q.Encode(), nil))
		loc, _ := url.Parse(rec.Header().Get("Location"))
		if loc == nil || loc.Query().Has("code") || loc.Query().Get("error") != "invalid_scope" {
			t.Fatalf("scope %q: %d %s, want invalid_scope and no code", scope, rec.Code, rec.Header().Get("Location"))
		}
	}
}

// TestConsentPageOfAnotherAccount: a consent page shown to one account and
// answered once the browser is logged in as another (out and in again, in
// another tab) grants nothing to either: the request is decided again for
// the account logged in now, which gets a consent page of its own.
func TestConsentPageOfAnotherAccount(t *testing.T) {
	e, ctx := newFuzzEnv(t), context.Background()
	if _, _, err := e.app.CreateClient(ctx, app.NewClient{ID: "third", Name: "Third", RedirectURIs: []string{fuzzRedirect}}); err != nil {
		t.Fatal(err)
	}
	const otherEmail, otherPassword = "b@example.com", "bbbb horse battery"
	other, err := e.app.CreateUser(ctx, app.NewUser{Email: otherEmail, Name: "B", Password: otherPassword})
	if err != nil {
		t.Fatal(err)
	}
	e.signIn(t, false)
	q := url.Values{"client_id": {"third"}, "redirect_uri": {fuzzRedirect}, "response_type": {"code"}, "scope": {"openid email"},
		"state": {"state-state"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	rec := e.serve(httptest.NewRequest(http.MethodGet, origin+oidc.PathAuthorize+"?"+q.Encode(), nil))
	page, err := url.Parse(rec.Header().Get("Location"))
	if err != nil || page.Path != "/consent" {
		t.Fatalf("authorize: %d %q, want the consent page", rec.Code, rec.Header().Get("Location"))
	}
	shown := page.Query().Get("flow")

	e.signOut()
	flow := e.newFlow(t, false)
	if rec := e.post("/login", url.Values{"csrf": {e.csrf}, "flow": {flow}, "email": {otherEmail}, "password": {otherPassword}}.Encode()); rec.Code != http.StatusSeeOther {
		t.Fatalf("the other account's login: %d", rec.Code)
	}
	rec = e.post("/consent", url.Values{"csrf": {e.csrf}, "flow": {shown}, "consent": {"allow"}}.Encode())
	for _, u := range []string{e.user.ID, other.ID} {
		if granted, err := e.app.Store.GetConsent(ctx, u, "third"); err != nil || len(granted) > 0 {
			t.Errorf("the first account's consent page, answered as the second: %s granted %v (%v)", u, granted, err)
		}
	}
	if next, err := url.Parse(rec.Header().Get("Location")); err != nil || next.Path != "/consent" || next.Query().Get("flow") == shown {
		t.Errorf("answer %d %q, want a consent page of the second account's own", rec.Code, rec.Header().Get("Location"))
	}
}
