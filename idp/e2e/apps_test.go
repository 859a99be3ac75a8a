package e2e

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/kamera-id/idp/idp/testenv"
)

// allow runs an authorization request of r in b's session through the
// consent page, allowing it, and exchanges the code.
func allow(t *testing.T, b *browser, r *rp) *tokens {
	t.Helper()
	a := r.authorize()
	pg := b.get(a.URL)
	if pg.formWith("consent") == nil {
		t.Fatalf("want the consent page, got %d %v:\n%s", pg.Status, pg.Redirect, pg.Body)
	}
	return r.mustExchange(a, b.submit(pg, "consent", map[string]string{"consent": "allow"}).code(t, a))
}

// refresh uses the refresh token once: the new tokens (the old access
// token is revoked with it).
func refresh(r *rp, token string) (*oauth2.Token, error) {
	return r.cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: token}).Token()
}

// wantInvalidGrant fails unless err is the token endpoint's invalid_grant.
func wantInvalidGrant(t *testing.T, what string, err error) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("%s: %v, want invalid_grant", what, err)
	}
}

// listedApps are the client ids on the apps page, in order.
func listedApps(pg *page) []string {
	var ids []string
	for _, n := range pg.byClass("app") {
		ids = append(ids, attr(n, "data-client"))
	}
	return ids
}

// TestRevokeAppAccess: My Page lists the apps the user allowed (not the
// first-party ones) and takes one's access back: its consent and its
// tokens for the user (refresh and access tokens, a code not redeemed yet)
// end at once, and it has to ask again; another app's and another user's
// stay. A post without a valid CSRF token changes nothing; revoking what
// is gone shows the list again.
func TestRevokeAppAccess(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		ctx := context.Background()
		p := startProvider(t, db)
		u := p.createUser(email, password)
		const otherEmail = "other@example.com"
		u2 := p.createUser(otherEmail, password)
		partner := p.newRP("partner", false)
		another := p.newRP("another", false)
		own := p.newRP("viewer", true)

		b := p.newBrowser()
		loginAs(t, p, b, email, password)
		tk := allow(t, b, partner)
		pending := partner.authorize()
		code := b.get(pending.URL).code(t, pending) // remembered: no consent page; not redeemed
		p.clock.Advance(time.Minute)
		tkAnother := allow(t, b, another)
		a := own.authorize()
		tkOwn := own.mustExchange(a, b.get(a.URL).code(t, a)) // first party: never asks
		b2 := p.newBrowser()
		loginAs(t, p, b2, otherEmail, password)
		tk2 := allow(t, b2, partner)

		// My Page leads to the list: the apps allowed, the latest first,
		// with what each may use; not the first-party one.
		if pg := b.get(p.URL + "/account"); pg.formWith("locale") == nil || !strings.Contains(pg.Body, `href="/account/apps"`) {
			t.Errorf("My Page does not link to /account/apps:\n%s", pg.Body)
		}
		pg := b.get(p.URL + "/account/apps")
		if got := listedApps(pg); pg.Status != http.StatusOK || !slices.Equal(got, []string{"another", "partner"}) {
			t.Fatalf("apps page: %d, apps %v, want [another partner]:\n%s", pg.Status, got, pg.Body)
		}
		for _, want := range []string{"RP partner", "メールアドレス", "ログアウトしている間も", "許可した日時"} {
			if !strings.Contains(pg.Body, want) {
				t.Errorf("apps page lacks %q", want)
			}
		}
		before := pg

		// Without a valid CSRF token: refused, and nothing changes.
		for _, c := range csrfCases {
			refused(t, "revoke, "+c.name, b.submitWith(pg, "client", map[string]string{"client": "partner"}, c.edit, nil))
		}
		if st := userinfoStatus(t, partner, tk.AccessToken); st != http.StatusOK {
			t.Fatalf("after refused revokes: userinfo %d, want 200", st)
		}
		if granted, err := p.app.Store.GetConsent(ctx, u.ID, "partner"); err != nil || len(granted) == 0 {
			t.Fatalf("after refused revokes: consent %v (%v)", granted, err)
		}

		// Revoked: the list without it, and a notice.
		pg = b.submit(pg, "client", map[string]string{"client": "partner"})
		if got := listedApps(pg); pg.Status != http.StatusOK || pg.URL.Path != "/account/apps" || !slices.Equal(got, []string{"another"}) {
			t.Fatalf("after revoking: %d %s, apps %v:\n%s", pg.Status, pg.URL, got, pg.Body)
		}
		if !strings.Contains(pg.Body, "アプリのアクセスを取り消しました。") {
			t.Error("no notice after revoking")
		}

		// Its tokens are dead: refresh token, access token, the code.
		if st := userinfoStatus(t, partner, tk.AccessToken); st != http.StatusUnauthorized {
			t.Errorf("access token after revoking: userinfo %d, want 401", st)
		}
		_, err := refresh(partner, tk.RefreshToken)
		wantInvalidGrant(t, "refresh token after revoking", err)
		_, err = partner.exchange(pending, code)
		wantInvalidGrant(t, "a code issued before revoking", err)

		// Another app's, the first-party app's and another user's tokens
		// and consents are untouched.
		others := []struct {
			name string
			r    *rp
			tk   *oauth2.Token
		}{{"another app", another, tkAnother.Token}, {"the first-party app", own, tkOwn.Token}, {"another user", partner, tk2.Token}}
		untouched := func(what string) {
			t.Helper()
			for i := range others {
				x := &others[i]
				if st := userinfoStatus(t, x.r, x.tk.AccessToken); st != http.StatusOK {
					t.Errorf("%s, %s: userinfo %d, want 200", what, x.name, st)
				}
				next, err := refresh(x.r, x.tk.RefreshToken)
				if err != nil {
					t.Fatalf("%s, %s: refresh: %v", what, x.name, err)
				}
				x.tk = next
			}
		}
		untouched("after revoking")
		for _, x := range []struct{ user, client string }{{u.ID, "another"}, {u2.ID, "partner"}} {
			if granted, err := p.app.Store.GetConsent(ctx, x.user, x.client); err != nil || len(granted) == 0 {
				t.Errorf("consent of %s to %s: %v (%v)", x.user, x.client, granted, err)
			}
		}

		// Recorded among the security events, with the app's name.
		if pg := b.get(p.URL + "/account"); !strings.Contains(pg.Body, "アプリのアクセスを取り消し") || !strings.Contains(pg.Body, "RP partner") {
			t.Errorf("My Page's events lack the revocation:\n%s", pg.Body)
		}

		// Again, from a page shown before (another tab), or for an app never
		// allowed: the list again.
		for _, client := range []string{"partner", "viewer", "nobody"} {
			pg = b.submit(before, "client", map[string]string{"client": client})
			if got := listedApps(pg); pg.Status != http.StatusOK || pg.URL.Path != "/account/apps" || !slices.Equal(got, []string{"another"}) {
				t.Errorf("revoking %s, not allowed: %d %s, apps %v", client, pg.Status, pg.URL, got)
			}
		}
		untouched("after revoking what was not allowed")

		// The next request asks again; allowed again, it works.
		tk = allow(t, b, partner)
		if st := userinfoStatus(t, partner, tk.AccessToken); st != http.StatusOK {
			t.Errorf("allowed again: userinfo %d, want 200", st)
		}
	})
}
