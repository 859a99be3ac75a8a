package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/testenv"
)

// loginAs logs the browser in to My Page with a password alone.
func loginAs(t *testing.T, p *provider, b *browser, addr, pw string) *page {
	t.Helper()
	pg := b.get(p.URL + "/account")
	pg = b.submit(pg, "password", map[string]string{"email": addr, "password": pw})
	if pg.URL.Path != "/account" || pg.Status != http.StatusOK {
		t.Fatalf("login as %s: %d %s\n%s", addr, pg.Status, pg.URL, pg.Body)
	}
	return pg
}

// TestSecurityEmails: 2FA on, backup code used (count, warning at 2 or
// fewer), backup codes replaced, 2FA off, 2FA reset by support, in Japanese; and in English for a
// user whose locale is English.
func TestSecurityEmails(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		p.createUser(email, password)
		b := p.newBrowser()
		accountLogin(t, p, b, "")
		_, codes := enroll(t, p, b)
		m := srv.waitFor(email, "2段階認証が有効になりました")
		if !strings.Contains(m.Body, "IPアドレス: 127.0.0.1") || !strings.Contains(m.Body, "お心当たりがない場合") {
			t.Errorf("2FA-on mail:\n%s", m.Body)
		}

		for i := range 8 {
			bb := p.newBrowser()
			pg := bb.get(p.URL + "/account")
			pg = bb.submit(pg, "password", map[string]string{"email": email, "password": password})
			pg = bb.submit(bb.get(p.URL+linkTo(t, pg, "/login/backup")), "backup_code", map[string]string{"backup_code": codes[i]})
			if pg.Status != http.StatusOK {
				t.Fatalf("backup code login %d: %d\n%s", i, pg.Status, pg.Body)
			}
		}
		m = srv.waitForBody(email, "バックアップコードでログインしました", "残り: 9 個")
		if strings.Contains(m.Body, "【ご注意】") {
			t.Errorf("warning with 9 codes left:\n%s", m.Body)
		}
		m = srv.waitForBody(email, "バックアップコードでログインしました", "残り: 3 個")
		if strings.Contains(m.Body, "【ご注意】") {
			t.Errorf("warning with 3 codes left:\n%s", m.Body)
		}
		m = srv.waitForBody(email, "バックアップコードでログインしました", "残り: 2 個")
		if !strings.Contains(m.Body, "【ご注意】バックアップコードの残りが少なくなっています") {
			t.Errorf("no warning with 2 codes left:\n%s", m.Body)
		}

		// A new set of backup codes voids the old ones: the owner hears of it.
		pg := b.submit(b.get(p.URL+"/account/2fa/backup-codes"), "password", map[string]string{"password": password})
		if pg = b.submit(pg, "flow", nil); len(pg.byClass("backup-code")) != 10 {
			t.Fatalf("replacing the backup codes: %d\n%s", pg.Status, pg.Body)
		}
		m = srv.waitFor(email, "バックアップコードが再発行されました")
		if !strings.Contains(m.Body, "以前のバックアップコードは使用できません") {
			t.Errorf("codes-replaced mail:\n%s", m.Body)
		}

		pg = b.get(p.URL + "/account/2fa/disable")
		pg = b.submit(pg, "password", map[string]string{"password": password})
		if pg.URL.Path != "/account/2fa" {
			t.Fatalf("disable: %s\n%s", pg.URL, pg.Body)
		}
		srv.waitFor(email, "2段階認証が解除されました")

		enroll(t, p, b)
		if _, _, err := p.app.ResetMFA(context.Background(), email); err != nil {
			t.Fatal(err)
		}
		srv.waitFor(email, "サポートにより2段階認証がリセットされました")

		// English.
		const enEmail = "english@example.com"
		if _, err := p.app.CreateUser(context.Background(), app.NewUser{Email: enEmail, Locale: "en", Password: password}); err != nil {
			t.Fatal(err)
		}
		eb := p.newBrowser()
		eb.get(p.URL + "/login?lang=ja") // pages in Japanese (enroll reads them), mails in the account's English
		loginAs(t, p, eb, enEmail, password)
		enroll(t, p, eb)
		m = srv.waitFor(enEmail, "Two-step verification was turned on")
		if strings.Contains(m.Body+m.Subject, "いつも") || !strings.Contains(m.Body, "IP address: 127.0.0.1") {
			t.Errorf("English mail:\n%s", m.Body)
		}
		if _, _, err := p.app.ResetMFA(context.Background(), enEmail); err != nil {
			t.Fatal(err)
		}
		srv.waitFor(enEmail, "Support reset your two-step verification")
		requestReset(t, p, p.newBrowser(), enEmail)
		m = srv.waitFor(enEmail, "Reset your password")
		resetLink(t, m)
		// And nothing in English went to the Japanese user, or vice versa.
		for _, r := range srv.all() {
			if japanese(r.Subject+r.Body) != (r.To == email) {
				t.Errorf("mail to %s in the wrong language: %q", r.To, r.Subject)
			}
		}
	})
}

// TestPasswordChange: My Page's password change (current password, new one
// twice) signs out the account's other sessions and sends a mail.
func TestPasswordChange(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		p.createUser(email, password)
		a, other := p.newBrowser(), p.newBrowser()
		loginAs(t, p, a, email, password)
		loginAs(t, p, other, email, password)

		pg := a.get(p.URL + "/account")
		pg = a.get(p.URL + linkTo(t, pg, "/account/password"))
		for _, bad := range []struct{ cur, pw, again, want, invalid string }{
			{"wrong password", newPassword, newPassword, "パスワードが正しくありません", "password"},
			{password, "qwertyuiop", "qwertyuiop", "よく使われている", "new_password new_password_confirm"},
			{password, email, email, "メールアドレスと同じ", "new_password new_password_confirm"},
			{password, newPassword, "something else", "一致しません", "new_password new_password_confirm"},
		} {
			pg = a.submit(pg, "new_password", map[string]string{"password": bad.cur, "new_password": bad.pw, "new_password_confirm": bad.again})
			if !strings.Contains(pg.alert(), bad.want) {
				t.Fatalf("change with %+v: want %q, got alert %q (%d)", bad, bad.want, pg.alert(), pg.Status)
			}
			// The field the message is about is marked, and has the focus.
			var invalid, focused []string
			for _, in := range findAll(pg.Doc, func(n *html.Node) bool { return n.Data == "input" }) {
				if attr(in, "aria-invalid") == "true" {
					invalid = append(invalid, attr(in, "name"))
				}
				if slices.ContainsFunc(in.Attr, func(a html.Attribute) bool { return a.Key == "autofocus" }) {
					focused = append(focused, attr(in, "name"))
				}
			}
			if strings.Join(invalid, " ") != bad.invalid || len(focused) != 1 || focused[0] != strings.Fields(bad.invalid)[0] {
				t.Errorf("change with %+v: fields marked invalid %q, focused %q; want %q, the first focused", bad, invalid, focused, bad.invalid)
			}
		}
		pg = a.submit(pg, "new_password", map[string]string{"password": password, "new_password": newPassword, "new_password_confirm": newPassword})
		if pg.URL.Path != "/account" || !strings.Contains(pg.Body, "パスワードを変更しました") {
			t.Fatalf("after the change: %s\n%s", pg.URL, pg.Body)
		}
		if !a.hasSession(p) {
			t.Error("the browser that changed the password was signed out")
		}
		if other.hasSession(p) {
			t.Error("the other browser is still signed in")
		}
		if m := srv.waitFor(email, "パスワードが変更されました"); !strings.Contains(m.Body, "（変更を行った端末を除く）") {
			t.Errorf("the change's mail does not say the device that made it stays logged in:\n%s", m.Body)
		}
		loginAs(t, p, p.newBrowser(), email, newPassword)
		if pg := loginAttempt(p.newBrowser(), p, email, password); pg.URL.Path == "/account" {
			t.Error("the old password still works")
		}
	})
}

// TestAccountLanguage: a customer chooses English on My Page; the account
// keeps it, the pages follow, and the next security e-mail is in English.
// Anything but ja or en is refused.
func TestAccountLanguage(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		p.createUser(email, password)
		b := p.newBrowser()
		pg := loginAs(t, p, b, email, password)
		if bad := b.submit(pg, "locale", map[string]string{"locale": "fr"}); bad.Status != http.StatusBadRequest {
			t.Errorf("locale fr: %d, want 400", bad.Status)
		}
		pg = b.submit(pg, "locale", map[string]string{"locale": "en"})
		if pg.URL.Path != "/account" || !strings.Contains(pg.Body, "Your language has been changed") ||
			!strings.Contains(pg.Body, `<html lang="en">`) {
			t.Fatalf("after choosing English: %s\n%s", pg.URL, pg.Body)
		}
		if u := p.mustUser(email); u.Locale != "en" {
			t.Fatalf("account locale %q, want en", u.Locale)
		}
		pg = b.get(p.URL + "/account/password")
		pg = b.submit(pg, "new_password", map[string]string{"password": password, "new_password": newPassword, "new_password_confirm": newPassword})
		if pg.URL.Path != "/account" {
			t.Fatalf("password change: %s\n%s", pg.URL, pg.Body)
		}
		if m := srv.waitFor(email, "Your password was changed"); japanese(m.Subject + m.Body) {
			t.Errorf("the mail after choosing English:\n%s", m.Body)
		}
		// Another browser (Japanese, the harness's default) that never chose:
		// its login pages follow the browser, My Page the account ...
		other := p.newBrowser()
		pg = other.get(p.URL + "/account")
		if !strings.Contains(pg.Body, `<html lang="ja">`) {
			t.Fatalf("login page in a Japanese browser: %s", pg.URL)
		}
		if pg = other.submit(pg, "password", map[string]string{"email": email, "password": newPassword}); pg.URL.Path != "/account" ||
			!strings.Contains(pg.Body, `<html lang="en">`) {
			t.Fatalf("My Page in another browser after choosing English: %s\n%.300s", pg.URL, pg.Body)
		}
		// ... until that browser chooses with the switch.
		if pg = other.get(p.URL + "/account?lang=ja"); !strings.Contains(pg.Body, `<html lang="ja">`) {
			t.Fatalf("My Page after the switch to Japanese: %.300s", pg.Body)
		}
		if pg = other.get(p.URL + "/account/2fa"); !strings.Contains(pg.Body, `<html lang="ja">`) {
			t.Fatalf("the next page after the switch to Japanese: %.300s", pg.Body)
		}
	})
}

// TestSessionsList: My Page lists the account's sessions (device, IP, last
// seen) and signs one, or all others, out, each recorded among the
// account's security events.
func TestSessionsList(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, _ := startMailProvider(t, db)
		u := p.createUser(email, password)
		events := func(typ string) int { return testenv.AuditEvents(t, p.app.Store, u.ID, typ) }
		a, b2, b3 := p.newBrowser(), p.newBrowser(), p.newBrowser()
		for _, b := range []*browser{a, b2, b3} {
			loginAs(t, p, b, email, password)
		}
		pg := a.get(p.URL + "/account")
		pg = a.get(p.URL + linkTo(t, pg, "/account/sessions"))
		items := pg.byClass("session")
		if len(items) != 3 {
			t.Fatalf("%d sessions listed, want 3:\n%s", len(items), pg.Body)
		}
		if n := len(pg.byClass("session-current")); n != 1 {
			t.Errorf("%d sessions marked current, want 1", n)
		}
		if !strings.Contains(pg.Body, "127.0.0.1") || !strings.Contains(pg.Body, "Go-http-client") {
			t.Errorf("the list lacks the IP or device:\n%s", pg.Body)
		}
		// Sign out one other session.
		current, others := listedSessions(pg)
		if len(others) == 0 || current == "" {
			t.Fatalf("session ids: others %q, current %q", others, current)
		}
		target := others[0]
		pg = a.submit(pg, "session", map[string]string{"session": target})
		if pg.URL.Path != "/account/sessions" || len(pg.byClass("session")) != 2 || !strings.Contains(pg.Body, "端末をログアウトさせました") {
			t.Fatalf("after signing one out: %s, %d sessions\n%s", pg.URL, len(pg.byClass("session")), pg.Body)
		}
		if in2, in3 := b2.hasSession(p), b3.hasSession(p); in2 == in3 {
			t.Errorf("want exactly one of the other browsers signed out: %v %v", in2, in3)
		}
		if n := events("session.ended"); n != 1 {
			t.Errorf("%d session.ended events after signing one device out, want 1", n)
		}
		// All the others.
		withOthers := pg
		pg = a.submit(pg, "others", nil)
		if len(pg.byClass("session")) != 1 || b2.hasSession(p) || b3.hasSession(p) || !a.hasSession(p) {
			t.Fatalf("after signing the others out: %d sessions listed; b2 %v b3 %v a %v",
				len(pg.byClass("session")), b2.hasSession(p), b3.hasSession(p), a.hasSession(p))
		}
		if n := events("sessions.ended_others"); n != 1 {
			t.Errorf("%d sessions.ended_others events after signing the others out, want 1", n)
		}
		// A session gone already, or no other session, is nothing to do,
		// and nothing is recorded.
		pg = a.submit(a.get(p.URL+"/account/sessions"), "session", map[string]string{"session": target})
		if n := events("session.ended"); pg.URL.Path != "/account/sessions" || n != 1 {
			t.Errorf("signing out a session gone already: %s, %d session.ended events, want 1", pg.URL, n)
		}
		pg = a.submit(withOthers, "others", nil) // the form as it was, posted again
		if n := events("sessions.ended_others"); pg.URL.Path != "/account/sessions" || n != 1 || !a.hasSession(p) {
			t.Errorf("signing the others out with none left: %s, %d sessions.ended_others events, want 1", pg.URL, n)
		}
		// This one: logged out.
		pg = a.submit(pg, "session", map[string]string{"session": current})
		if pg.Status != http.StatusOK || a.hasSession(p) {
			t.Errorf("signing this session out: %d, still signed in %v", pg.Status, a.hasSession(p))
		}
	})
}

// TestSignOutThisDevice: signing this device out from the devices list ends
// its session and the tokens issued in it, as for any other device.
func TestSignOutThisDevice(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		b := p.newBrowser()
		a := r.authorize()
		tk := r.mustExchange(a, login(t, b, r, a))
		pg := b.get(p.URL + "/account/sessions")
		current, _ := listedSessions(pg)
		if current == "" {
			t.Fatalf("no current session listed:\n%s", pg.Body)
		}
		pg = b.submit(pg, "session", map[string]string{"session": current})
		if pg.Status != http.StatusOK || b.hasSession(p) {
			t.Fatalf("signing this device out: %d, still signed in %v", pg.Status, b.hasSession(p))
		}
		wantTokens(t, r, tk, false, "the signed-out session's tokens")
	})
}

// TestSessionTokenRotated: a change of the account's credentials on My
// Page (a new password, 2FA turned on) and signing the other devices out
// give the browser's session a new cookie: a copy of the old one (taken
// by someone the owner now means to shut out) signs nothing in, while the
// browser that made the change stays signed in, with its remember-me kept
// (or its cookie still one for the browser's session).
func TestSessionTokenRotated(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		u, _ := url.Parse(p.URL)
		for i, tc := range []struct {
			change   string
			remember bool
		}{{"password", true}, {"password", false}, {"2FA on", true}, {"other devices signed out", true}, {"other devices signed out", false}} {
			change := fmt.Sprintf("%s (remembered: %v)", tc.change, tc.remember)
			addr := fmt.Sprintf("rotated%d@example.com", i)
			p.createUser(addr, password)
			b := p.newBrowser()
			form := map[string]string{"email": addr, "password": password}
			if tc.remember {
				form["remember"] = "on"
			}
			pg := b.submit(b.get(p.URL+"/account"), "password", form)
			if pg.URL.Path != "/account" {
				t.Fatalf("%s: login: %d %s", change, pg.Status, pg.URL)
			}
			thief := p.newBrowser()
			thief.client.Jar.SetCookies(u, b.client.Jar.Cookies(u))
			if !thief.hasSession(p) {
				t.Fatalf("%s: the copied cookies do not sign in (the test's premise)", change)
			}
			cookies := b.recordCookies()
			switch tc.change {
			case "password":
				pg = b.submit(b.get(p.URL+"/account/password"), "new_password",
					map[string]string{"password": password, "new_password": newPassword, "new_password_confirm": newPassword})
				if pg.URL.Path != "/account" {
					t.Fatalf("password change: %d %s", pg.Status, pg.URL)
				}
			case "2FA on":
				enroll(t, p, b)
			default:
				other := p.newBrowser()
				loginAs(t, p, other, addr, password)
				pg = b.submit(b.get(p.URL+"/account/sessions"), "others", nil)
				if pg.Status != http.StatusOK || other.hasSession(p) {
					t.Fatalf("signing the other devices out: %d %s, the other one still signed in: %v", pg.Status, pg.URL, other.hasSession(p))
				}
			}
			if thief.hasSession(p) {
				t.Errorf("%s: a copy of the old session cookie still signs in", change)
			}
			if !b.hasSession(p) {
				t.Errorf("%s: the browser that made the change is signed out", change)
			}
			var session *http.Cookie
			for _, c := range cookies.all() {
				if strings.HasSuffix(c.Name, "idp_session") {
					session = c
				}
			}
			switch {
			case session == nil:
				t.Errorf("%s: no new session cookie", change)
			case tc.remember && session.MaxAge <= 0:
				t.Errorf("%s: the new session cookie %+v, want one kept across restarts (remember-me)", change, session)
			case !tc.remember && (session.MaxAge != 0 || !session.Expires.IsZero()):
				t.Errorf("%s: the new session cookie %+v, want one for the browser's session", change, session)
			}
		}
	})
}

// listedSessions are the ids of the sessions on the devices page: this
// browser's (この端末) and the others'.
func listedSessions(pg *page) (current string, others []string) {
	for _, li := range pg.byClass("session") {
		id := ""
		for _, in := range findAll(li, func(n *htmlNode) bool { return attr(n, "name") == "session" }) {
			id = attr(in, "value")
		}
		if strings.Contains(text(li), "この端末") {
			current = id
		} else {
			others = append(others, id)
		}
	}
	return current, others
}

// japanese reports whether s has kana or kanji.
func japanese(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r >= 0x3040 && r <= 0x9fff })
}

// TestAccountLanguageWithoutSession: the pages an account sees without a
// session speak its language, as My Page does, in a browser that asks for
// none (here: Japanese, the default): the page after logging out from My
// Page, and a reset link's form and completion page (its mail was in the
// account's language).
func TestAccountLanguageWithoutSession(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		const enEmail = "english@example.com"
		if _, err := p.app.CreateUser(context.Background(), app.NewUser{Email: enEmail, Locale: "en", Password: password}); err != nil {
			t.Fatal(err)
		}
		b := p.newBrowser()
		loginAs(t, p, b, enEmail, password)
		pg := b.get(p.URL + "/account")
		if !strings.Contains(pg.Body, `<html lang="en">`) {
			t.Fatalf("My Page of an English account is not in English")
		}
		if pg = b.submit(pg, "csrf", nil); !strings.Contains(pg.Body, `<html lang="en">`) || b.hasSession(p) {
			t.Errorf("logged out from My Page: the page is not in the account's English (session kept %v):\n%s", b.hasSession(p), pg.Body)
		}

		requestReset(t, p, p.newBrowser(), enEmail)
		link := resetLink(t, srv.waitFor(enEmail, "Reset your password"))
		r := p.newBrowser()
		pg = r.get(link)
		if !strings.Contains(pg.Body, `<html lang="en">`) || pg.formWith("new_password") == nil {
			t.Fatalf("the reset form of an English account's link is not in English:\n%s", pg.Body)
		}
		const newPassword = "a brand new passphrase"
		pg = r.submit(pg, "new_password", map[string]string{"new_password": newPassword, "new_password_confirm": newPassword})
		if !strings.Contains(pg.Body, `<html lang="en">`) {
			t.Errorf("the reset's completion page of an English account is not in English:\n%s", pg.Body)
		}
	})
}
