package e2e

import (
	"net/http"
	"testing"

	"golang.org/x/oauth2"

	"github.com/kamera-id/idp/idp/testenv"
)

// TestPromptValidatedFirst: a prompt value the provider does not know, or
// none with any other value (OIDC Core 3.1.2.1), answers invalid_request to
// the redirect URI, with the state, before any page: no login page without
// a session, no account choice or consent page with one (with none, no
// page may be shown at all), and so never a code.
func TestPromptValidatedFirst(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		third := p.newRP("third", false)
		b := p.newBrowser()

		refused := func(what string, r *rp, prompt string) {
			t.Helper()
			a := r.authorize(oauth2.SetAuthURLParam("prompt", prompt))
			pg := b.get(a.URL)
			if pg.Redirect == nil {
				t.Errorf("%s, prompt=%q: got a page (%d), want invalid_request at the redirect URI", what, prompt, pg.Status)
				return
			}
			q := pg.Redirect.Query()
			if q.Get("error") != "invalid_request" || q.Get("code") != "" || q.Get("state") != a.State {
				t.Errorf("%s, prompt=%q: redirected to %v, want error=invalid_request with the state and no code", what, prompt, pg.Redirect)
			}
		}
		bad := []string{"bogus", "none login", "none select_account", "none consent", "login bogus", "none none login", "none\tlogin"}

		// Without a session: not the login page.
		for _, prompt := range bad {
			refused("without a session", r, prompt)
		}

		a := r.authorize()
		login(t, b, r, a)

		// With a session: neither the account choice nor the consent page,
		// nor a code.
		for _, prompt := range bad {
			refused("with a session", r, prompt)
			refused("with a session, a client that asks for consent", third, prompt)
		}

		// The values the provider knows still work, alone and together.
		a = r.authorize(oauth2.SetAuthURLParam("prompt", "none"))
		r.mustExchange(a, b.get(a.URL).code(t, a))
		a = r.authorize(oauth2.SetAuthURLParam("prompt", "select_account consent"))
		if pg := b.get(a.URL); pg.Status != http.StatusOK || pg.formWith("account") == nil {
			t.Errorf("prompt=select_account consent: got %d %v, want the account choice", pg.Status, pg.Redirect)
		}
		a = r.authorize(oauth2.SetAuthURLParam("prompt", "login consent"))
		if pg := b.get(a.URL); pg.Status != http.StatusOK || pg.formWith("password") == nil {
			t.Errorf("prompt=login consent: got %d %v, want the login page", pg.Status, pg.Redirect)
		}
	})
}
