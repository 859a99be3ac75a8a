package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// withUserAgent sends every request of a browser with this User-Agent
// header, bytes as they are.
type withUserAgent struct {
	ua   string
	next http.RoundTripper
}

func (w withUserAgent) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("User-Agent", w.ua)
	return w.next.RoundTrip(req)
}

// TestLoginWithUnusualUserAgent: a login ends with a session whatever the
// browser's User-Agent header holds: a long one that the 200 bytes kept
// of it would cut in the middle of a character, or one with a raw Latin-1
// byte. (PostgreSQL refuses invalid UTF-8 in the session's user agent, so
// such a browser got a 500 at the very end of each login, its TOTP code
// or backup code already spent.) What is kept is valid UTF-8, and My
// Page lists both sessions.
func TestLoginWithUnusualUserAgent(t *testing.T) {
	long := "Mozilla/5.0 (" + strings.Repeat("日本語", 100) + ")"
	if utf8.RuneStart(long[200]) {
		t.Fatal("the long user agent must have a character across its 200th byte")
	}
	latin1 := "caf\xe9/1.0"
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		u := p.createUser(email, password)
		r := p.newRP("viewer", true)
		var b *browser
		for _, ua := range []string{long, latin1} {
			b = p.newBrowser()
			b.client.Transport = withUserAgent{ua: ua, next: http.DefaultTransport}
			a := r.authorize()
			r.mustExchange(a, login(t, b, r, a))
		}

		want := []string{store.ClipText(long, 200), "caf\uFFFD/1.0"}
		sessions, err := p.app.Store.ListUserSessions(t.Context(), u.ID, p.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range sessions {
			got = append(got, s.UserAgent)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("sessions' user agents %q, want %q", got, want)
		}

		pg := b.get(p.URL + "/account/sessions")
		if pg.Status != http.StatusOK || !utf8.ValidString(pg.Body) {
			t.Fatalf("sessions page: %d, valid UTF-8 %v\n%s", pg.Status, utf8.ValidString(pg.Body), pg.Body)
		}
		for _, device := range []string{store.ClipText(long, 60), "caf\uFFFD/1.0"} {
			if !strings.Contains(pg.Body, device) {
				t.Errorf("sessions page lacks the device %q", device)
			}
		}
	})
}
