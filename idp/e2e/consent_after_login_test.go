package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/kamera-id/idp/idp/testenv"
)

// consentThenLogin posts allow on the consent page pg of request a and
// checks that no code came of it, but the login page: then it logs in (with
// the TOTP code when secret is set) and returns the ID token's amr.
func consentThenLogin(t *testing.T, p *provider, b *browser, r *rp, a authRequest, pg *page, secret string) []string {
	t.Helper()
	pg = b.submit(pg, "consent", map[string]string{"consent": "allow"})
	if pg.Redirect != nil {
		if code := pg.Redirect.Query().Get("code"); code != "" {
			tk := r.mustExchange(a, code)
			t.Fatalf("the consent page's allow issued a code without a login (amr %v), want the login page", amr(tk.Claims))
		}
		t.Fatalf("the consent page's allow: redirect %v, want the login page", pg.Redirect)
	}
	if pg.Status != http.StatusOK || pg.formWith("password") == nil {
		t.Fatalf("the consent page's allow: %d %s, want the login page:\n%s", pg.Status, pg.URL, pg.Body)
	}
	pg = b.submit(pg, "password", map[string]string{"email": email, "password": password})
	if secret != "" {
		pg = b.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)})
	}
	return amr(r.mustExchange(a, pg.code(t, a)).Claims)
}

// TestConsentAfterLoginThen2FA: a third party's consent page, shown right
// after a password login for its request, is left open while two-step
// verification is turned on in another tab of the browser (which keeps its
// session, authenticated by the password alone). Allowing on the old page
// issues no code with amr ["pwd"] for the account that now has 2FA on: the
// login is asked for again, with the second step.
func TestConsentAfterLoginThen2FA(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("partner", false)
		b := p.newBrowser()
		a, consent := rpLogin(t, b, r)
		if consent.formWith("consent") == nil {
			t.Fatalf("want the consent page, got %d %v:\n%s", consent.Status, consent.Redirect, consent.Body)
		}

		// Another tab: 2FA turned on from My Page.
		setup, secret := setupPage(t, p, b)
		if done := b.submit(setup, "code", map[string]string{"code": totpCode(t, p, secret)}); !strings.Contains(done.Body, "2段階認証設定の完了") {
			t.Fatalf("2FA setup: want the completion page, got %d:\n%s", done.Status, done.Body)
		}
		p.clock.Advance(30 * time.Second) // the setup's code is spent

		if got := consentThenLogin(t, p, b, r, a, consent, secret); !slices.Equal(got, []string{"pwd", "otp"}) {
			t.Errorf("amr %v after the login asked for again, want [pwd otp]", got)
		}
	})
}

// TestConsentAfterLoginOtherSession: the consent page shown right after a
// login for a request with prompt=login is left open while the browser
// logs in again in another tab (a session of its own, not this request's
// login). Allowing on the old page takes that session for no login of this
// request: prompt=login asks for one.
func TestConsentAfterLoginOtherSession(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("partner", false)
		b := p.newBrowser()
		a, consent := rpLogin(t, b, r, oauth2.SetAuthURLParam("prompt", "login"))
		if consent.formWith("consent") == nil {
			t.Fatalf("want the consent page, got %d %v:\n%s", consent.Status, consent.Redirect, consent.Body)
		}

		// Another tab: a login to My Page, which replaces the session.
		if pg := b.submit(b.get(p.URL+"/login"), "password", map[string]string{"email": email, "password": password}); pg.Status != http.StatusOK || pg.URL.Path != "/account" {
			t.Fatalf("login to My Page: %d %s", pg.Status, pg.URL)
		}

		if got := consentThenLogin(t, p, b, r, a, consent, ""); !slices.Equal(got, []string{"pwd"}) {
			t.Errorf("amr %v after the login asked for again, want [pwd]", got)
		}
	})
}
