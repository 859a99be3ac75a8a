package e2e

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

const newPassword = "a brand new passphrase"

// startMailProvider starts a provider whose mails go to an in-process SMTP
// server on loopback, with its sender running and polling quickly.
func startMailProvider(t *testing.T, db testenv.Database, tweak ...func(*config.Config)) (*provider, *smtpServer) {
	t.Helper()
	srv := newSMTPServer(t)
	p := startProvider(t, db, append([]func(*config.Config){quickMail(srv)}, tweak...)...)
	runMail(t, p)
	return p, srv
}

// quickMail sends a provider's mails to srv, polling and retrying quickly.
func quickMail(srv *smtpServer) func(*config.Config) {
	return func(c *config.Config) {
		c.SMTPURL = srv.URL()
		c.MailFrom = "Camera ID <no-reply@example.com>"
		c.MailPoll, c.MailRetryBase, c.MailRetryMax = 20*time.Millisecond, 10*time.Millisecond, 50*time.Millisecond
	}
}

// runMail runs p's mail sender until the test ends.
func runMail(t *testing.T, p *provider) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.app.RunMail(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

var resetLinkRE = regexp.MustCompile(`http://\S+/reset-password\?token=\S+`)

func resetLink(t *testing.T, m received) string {
	t.Helper()
	l := resetLinkRE.FindString(m.Body)
	if l == "" {
		t.Fatalf("no reset link in the mail:\n%s", m.Body)
	}
	return l
}

// requestReset asks for a reset link from the login page's link.
func requestReset(t *testing.T, p *provider, b *browser, addr string) *page {
	t.Helper()
	pg := b.get(p.URL + "/login")
	var forgot string
	for _, a := range findAll(pg.Doc, func(n *htmlNode) bool { return n.Data == "a" }) {
		if strings.Contains(text(a), "パスワードを忘れた方はこちら") {
			forgot = attr(a, "href")
		}
	}
	if forgot == "" {
		t.Fatalf("no パスワードを忘れた方はこちら link on the login page")
	}
	u, _ := pg.URL.Parse(forgot)
	pg = b.get(u.String())
	return b.submit(pg, "email", map[string]string{"email": addr})
}

// csrfValue strips what differs between two renderings of one page (of
// two browsers: their CSRF tokens, the ids of the logins they came from).
var csrfValue = regexp.MustCompile(`value="[^"]*"|flow=[A-Za-z0-9_-]+|Request ID: \S+|リクエストID: \S+`)

// TestPasswordResetByEmail: the reset flow end to end; the link used twice
// is refused; other sessions are signed out; the mails are in Japanese.
func TestPasswordResetByEmail(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		a := r.authorize()
		if v := r.mustExchange(a, login(t, p.newBrowser(), r, a)).Claims["email_verified"]; v != false {
			t.Fatalf("email_verified before any reset: %v, want false", v)
		}
		other := p.newBrowser()
		accountLogin(t, p, other, "")

		b := p.newBrowser()
		pg := requestReset(t, p, b, email)
		if pg.Status != http.StatusOK || !strings.Contains(pg.Body, "メールを確認してください") {
			t.Fatalf("after the request: %d\n%s", pg.Status, pg.Body)
		}
		m := srv.waitFor(email, "パスワード再設定のご案内")
		if m.From != "no-reply@example.com" || !strings.Contains(m.Body, "30分") {
			t.Errorf("reset mail: from %q, body:\n%s", m.From, m.Body)
		}
		for _, h := range []string{"Date", "Message-Id", "From", "To"} {
			if m.Header.Get(h) == "" {
				t.Errorf("reset mail lacks the %s header", h)
			}
		}
		link := resetLink(t, m)

		pg = b.get(link)
		if pg.Status != http.StatusOK || pg.formWith("new_password") == nil || !strings.Contains(pg.Body, "8文字以上128文字以内") {
			t.Fatalf("reset form: %d\n%s", pg.Status, pg.Body)
		}
		// The rules: a common password, too short, a mismatch.
		for _, bad := range []struct{ pw, again, want string }{
			{"password123", "password123", "よく使われている"},
			{"short", "short", "8文字以上"},
			{newPassword, newPassword + "x", "一致しません"},
		} {
			pg = b.submit(pg, "new_password", map[string]string{"new_password": bad.pw, "new_password_confirm": bad.again})
			if !strings.Contains(pg.alert(), bad.want) || pg.formWith("new_password") == nil {
				t.Fatalf("new password %q: want the form with %q, got alert %q", bad.pw, bad.want, pg.alert())
			}
		}
		pg = b.submit(pg, "new_password", map[string]string{"new_password": newPassword, "new_password_confirm": newPassword})
		if pg.Status != http.StatusOK || !strings.Contains(pg.Body, "パスワードを再設定しました") {
			t.Fatalf("reset: %d\n%s", pg.Status, pg.Body)
		}
		if other.hasSession(p) {
			t.Error("the other browser is still signed in after the reset")
		}
		// A reset signs out every device, the one that made it too.
		if m := srv.waitFor(email, "パスワードが変更されました"); !strings.Contains(m.Body, "すべての端末でログアウトしました。") {
			t.Errorf("the reset's mail does not say every device was logged out:\n%s", m.Body)
		}

		// The link works once.
		pg = b.get(link)
		if pg.Status != http.StatusGone || !strings.Contains(pg.Body, "/forgot-password") {
			t.Errorf("link used twice: %d\n%s", pg.Status, pg.Body)
		}
		// Old password refused, new one accepted.
		if pg := loginAttempt(p.newBrowser(), p, email, password); pg.URL.Path == "/account" {
			t.Error("the old password still works")
		}
		nb := p.newBrowser()
		pg = nb.get(p.URL + "/account")
		pg = nb.submit(pg, "password", map[string]string{"email": email, "password": newPassword})
		if pg.URL.Path != "/account" || pg.Status != http.StatusOK {
			t.Errorf("login with the new password: %d %s", pg.Status, pg.URL)
		}
		// The link came to the address by mail: the address is verified.
		a = r.authorize()
		rb := p.newBrowser()
		pg = rb.get(a.URL)
		pg = rb.submit(pg, "password", map[string]string{"email": email, "password": newPassword})
		if v := r.mustExchange(a, pg.code(t, a)).Claims["email_verified"]; v != true {
			t.Errorf("email_verified after a reset by mail: %v, want true", v)
		}
	})
}

// TestPasswordResetExpired: a link older than 30 minutes is refused.
func TestPasswordResetExpired(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		p.createUser(email, password)
		b := p.newBrowser()
		requestReset(t, p, b, email)
		link := resetLink(t, srv.waitFor(email, "パスワード再設定"))
		form := b.get(link)
		if form.formWith("new_password") == nil {
			t.Fatalf("fresh link: no form\n%s", form.Body)
		}
		p.clock.Advance(30*time.Minute + time.Second)
		if pg := b.get(link); pg.Status != http.StatusGone || !strings.Contains(pg.Body, "このリンクは使用できません") {
			t.Errorf("expired link: %d\n%s", pg.Status, pg.Body)
		}
		// A form loaded before the expiry cannot be used after it either.
		pg := b.submit(form, "new_password", map[string]string{"new_password": newPassword, "new_password_confirm": newPassword})
		if pg.Status != http.StatusGone {
			t.Errorf("form of an expired link: %d\n%s", pg.Status, pg.Body)
		}
		if pg := loginAttempt(p.newBrowser(), p, email, newPassword); pg.URL.Path == "/account" {
			t.Error("the expired link changed the password")
		}
	})
}

// TestPasswordResetRace: several concurrent uses of one link; exactly one
// succeeds.
func TestPasswordResetRace(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		p.createUser(email, password)
		requestReset(t, p, p.newBrowser(), email)
		link := resetLink(t, srv.waitFor(email, "パスワード再設定"))
		const n = 5
		browsers, forms := make([]*browser, n), make([]*page, n)
		for i := range n {
			browsers[i] = p.newBrowser()
			forms[i] = browsers[i].get(link)
		}
		results := make([]*page, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				pw := newPassword + string(rune('a'+i))
				results[i] = browsers[i].submit(forms[i], "new_password", map[string]string{"new_password": pw, "new_password_confirm": pw})
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for i, pg := range results {
			switch pg.Status {
			case http.StatusOK:
				wins++
			case http.StatusGone:
			default:
				t.Errorf("racer %d: status %d\n%s", i, pg.Status, pg.Body)
			}
		}
		if wins != 1 {
			t.Fatalf("%d resets succeeded, want exactly 1", wins)
		}
		srv.waitFor(email, "パスワードが変更されました")
		if c := srv.count(email, "パスワードが変更されました"); c != 1 {
			t.Errorf("%d password-changed mails, want 1", c)
		}
	})
}

// TestPasswordResetSamePage: known and unknown addresses get the same page,
// and only the known one gets a mail.
func TestPasswordResetSamePage(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		p.createUser(email, password)
		unknown := requestReset(t, p, p.newBrowser(), "nobody@example.com")
		known := requestReset(t, p, p.newBrowser(), email)
		if unknown.Status != known.Status {
			t.Errorf("status: unknown %d, known %d", unknown.Status, known.Status)
		}
		if a, b := csrfValue.ReplaceAllString(unknown.Body, ""), csrfValue.ReplaceAllString(known.Body, ""); a != b {
			t.Errorf("the pages differ:\nunknown:\n%s\nknown:\n%s", a, b)
		}
		srv.waitFor(email, "パスワード再設定")
		if c := srv.count("nobody@example.com", ""); c != 0 {
			t.Errorf("%d mails to the unknown address", c)
		}
	})
}

// TestPasswordResetKeeps2FA: a reset does not turn 2FA off.
func TestPasswordResetKeeps2FA(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		p.createUser(email, password)
		b := p.newBrowser()
		accountLogin(t, p, b, "")
		secret, _ := enroll(t, p, b)
		srv.waitFor(email, "2段階認証が有効になりました")

		rb := p.newBrowser()
		requestReset(t, p, rb, email)
		pg := rb.get(resetLink(t, srv.waitFor(email, "パスワード再設定")))
		pg = rb.submit(pg, "new_password", map[string]string{"new_password": newPassword, "new_password_confirm": newPassword})
		if pg.Status != http.StatusOK {
			t.Fatalf("reset: %d\n%s", pg.Status, pg.Body)
		}
		if !mfaEnabled(t, p, p.mustUser(email).ID) {
			t.Fatal("the reset turned 2FA off")
		}
		nb := p.newBrowser()
		pg = nb.get(p.URL + "/account")
		pg = nb.submit(pg, "password", map[string]string{"email": email, "password": newPassword})
		if pg.formWith("code") == nil {
			t.Fatalf("after the reset, the login must ask for the code: %s\n%s", pg.URL, pg.Body)
		}
		pg = nb.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)})
		if pg.URL.Path != "/account" {
			t.Errorf("login with code after the reset: %s", pg.URL)
		}
	})
}

func (p *provider) mustUser(addr string) *store.User {
	p.t.Helper()
	u, err := p.app.Store.GetUserByEmail(context.Background(), addr)
	if err != nil {
		p.t.Fatal(err)
	}
	return u
}

// TestSMTPOutage: with the mail server down, the mail is kept and retried,
// and sent once it is back; nothing is lost, nothing sent twice.
func TestSMTPOutage(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db, func(c *config.Config) { c.MetricsListen = "127.0.0.1:0" })
		p.createUser(email, password)
		srv.Stop()
		pg := requestReset(t, p, p.newBrowser(), email)
		if pg.Status != http.StatusOK {
			t.Fatalf("the request must not fail while the mail server is down: %d", pg.Status)
		}
		// Wait until a failed attempt is on record.
		sqlDB := p.app.Store.(interface{ Unwrap() store.Store }).Unwrap().(interface{ DB() *sql.DB }).DB() // under the metrics
		deadline := time.Now().Add(15 * time.Second)
		for {
			var attempts int
			var lastErr string
			err := sqlDB.QueryRow(`SELECT attempts, last_error FROM mail_outbox WHERE recipient = $1`, email).Scan(&attempts, &lastErr)
			if err == nil && attempts >= 2 && lastErr != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no failed attempts recorded (attempts %d, err %v)", attempts, err)
			}
			time.Sleep(10 * time.Millisecond) // polling the database with a deadline
		}
		srv.Start()
		srv.waitFor(email, "パスワード再設定")
		// Marked sent once the server accepted it.
		deadline = time.Now().Add(15 * time.Second)
		for {
			var sent int64
			err := sqlDB.QueryRow(`SELECT sent_at FROM mail_outbox WHERE recipient = $1`, email).Scan(&sent)
			if err == nil && sent != 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the delivered mail is not marked sent (sent_at %d, err %v)", sent, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if c := srv.count(email, "パスワード再設定"); c != 1 {
			t.Errorf("%d copies delivered, want 1", c)
		}
		// The attempts are counted for the operators' alerts: at least the
		// first failed (a second one was claimed, which may have been the
		// one that got through), and one was sent.
		rec := httptest.NewRecorder()
		p.app.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		failed, _ := metricValue(rec.Body.String(), "idp_mail_attempts_total", "result", "failed")
		sent, _ := metricValue(rec.Body.String(), "idp_mail_attempts_total", "result", "sent")
		if failed < 1 || sent != 1 {
			t.Errorf("idp_mail_attempts_total: failed %v, sent %v; want at least 1 and 1", failed, sent)
		}
	})
}

// TestOutboxSealed: the outbox keeps mail bodies (reset links) sealed with
// the master key, never in plain text.
func TestOutboxSealed(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		p.createUser(email, password)
		requestReset(t, p, p.newBrowser(), email)
		link := resetLink(t, srv.waitFor(email, "パスワード再設定"))
		token := link[strings.Index(link, "token=")+len("token="):]
		var body string
		if err := p.app.Store.(interface{ DB() *sql.DB }).DB().QueryRow(
			`SELECT body FROM mail_outbox WHERE recipient = $1`, email).Scan(&body); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(body, token) || strings.Contains(body, "reset-password") || !strings.HasPrefix(body, "sealed:v1:") {
			t.Errorf("outbox body in plain text: %.80s", body)
		}
	})
}

// TestPasswordResetThrottle: past the per-address limit the page stays the
// same, and no further mail is sent.
func TestPasswordResetThrottle(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db, func(c *config.Config) { c.ResetMaxPerEmail = 2 })
		p.createUser(email, password)
		var pages []*page
		for range 3 {
			pages = append(pages, requestReset(t, p, p.newBrowser(), email))
		}
		for i, pg := range pages {
			if pg.Status != http.StatusOK || csrfValue.ReplaceAllString(pg.Body, "") != csrfValue.ReplaceAllString(pages[0].Body, "") {
				t.Errorf("request %d: a different page (%d)", i, pg.Status)
			}
		}
		// The two allowed mails arrive; then a mail to another address
		// (queued after the third request) arrives too, so the third
		// request's mail would have been sent by then.
		p.createUser("second@example.com", password)
		requestReset(t, p, p.newBrowser(), "second@example.com")
		srv.waitFor("second@example.com", "パスワード再設定")
		if c := srv.count(email, "パスワード再設定"); c != 2 {
			t.Errorf("%d reset mails, want 2 (the third request is over the limit)", c)
		}
	})
}

// TestPasswordChangeRevokes: a new password voids the reset links mailed
// for the old one, and the tokens relying parties got in the sessions it
// ends (refresh tokens included); the session that changed it keeps its own.
func TestPasswordChangeRevokes(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		a := r.authorize()
		elsewhere := r.mustExchange(a, login(t, p.newBrowser(), r, a)) // offline_access

		requestReset(t, p, p.newBrowser(), email)
		link := resetLink(t, srv.waitFor(email, "パスワード再設定"))

		b := p.newBrowser()
		loginAs(t, p, b, email, password)
		a = r.authorize()
		here := r.mustExchange(a, b.get(a.URL).code(t, a)) // SSO: the session that changes it
		pg := b.get(p.URL + "/account/password")
		pg = b.submit(pg, "new_password", map[string]string{"password": password, "new_password": newPassword, "new_password_confirm": newPassword})
		if pg.URL.Path != "/account" {
			t.Fatalf("password change: %s\n%s", pg.URL, pg.Body)
		}

		if pg := p.newBrowser().get(link); pg.Status != http.StatusGone {
			t.Errorf("a reset link mailed before the change: %d, want 410", pg.Status)
		}
		wantTokens(t, r, elsewhere, false, "the tokens of an ended session")
		wantTokens(t, r, here, true, "the tokens of the session that changed the password")
	})
}

// TestForgotPasswordBackToLogin: the forgot-password page opened from a
// relying party's login page, and the page its form answers, lead back to
// that login (its flow), not to a login that ends on My Page.
func TestForgotPasswordBackToLogin(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, _ := startMailProvider(t, db)
		p.createUser(email, password)
		r := p.newRP("viewer", true)
		b := p.newBrowser()
		pg := b.get(r.authorize().URL)
		flow := pg.URL.Query().Get("flow")
		if pg.URL.Path != "/login" || flow == "" {
			t.Fatalf("authorize: %d %s, want the login page of a flow", pg.Status, pg.URL)
		}
		back := "/login?flow=" + url.QueryEscape(flow)
		forgot, _ := pg.URL.Parse(linkTo(t, pg, "/forgot-password"))
		pg = b.get(forgot.String())
		if got := linkTo(t, pg, "/login"); got != back {
			t.Errorf("forgot-password page's way back: %q, want %q", got, back)
		}
		pg = b.submit(pg, "email", map[string]string{"email": email})
		if got := linkTo(t, pg, "/login"); pg.Status != http.StatusOK || got != back {
			t.Errorf("after the request: %d, way back %q, want %q", pg.Status, got, back)
		}
		pg = b.get(p.URL + back)
		if pg.Status != http.StatusOK || !strings.Contains(pg.Body, "viewer") && pg.formWith("password") == nil {
			t.Errorf("back at the login: %d %s", pg.Status, pg.URL)
		}
	})
}

// TestPasswordResetBackToRelyingParty: a reset asked for from a relying
// party's login and set in the same browser leads back to that relying
// party's request (a new login for it, with the new password, ending in a
// code it exchanges); set in another browser (the mail opened on a phone),
// to the login page.
func TestPasswordResetBackToRelyingParty(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, srv := startMailProvider(t, db)
		const other = "other@example.com"
		p.createUser(email, password)
		p.createUser(other, password)
		r := p.newRP("viewer", true)
		a := r.authorize()
		b := p.newBrowser()
		forgot := func(addr string) {
			t.Helper()
			pg := b.get(a.URL)
			u, _ := pg.URL.Parse(linkTo(t, pg, "/forgot-password?flow="))
			if pg = b.submit(b.get(u.String()), "email", map[string]string{"email": addr}); pg.Status != http.StatusOK {
				t.Fatalf("reset request: %d\n%s", pg.Status, pg.Body)
			}
		}
		setPassword := func(br *browser, addr string) *page {
			t.Helper()
			pg := br.get(resetLink(t, srv.waitFor(addr, "パスワード再設定のご案内")))
			pg = br.submit(pg, "new_password", map[string]string{"new_password": newPassword, "new_password_confirm": newPassword})
			if pg.Status != http.StatusOK || !strings.Contains(pg.Body, "パスワードを再設定しました") {
				t.Fatalf("reset: %d\n%s", pg.Status, pg.Body)
			}
			return pg
		}

		// Asked for in b, set on a phone: the login page.
		forgot(other)
		pg := setPassword(p.newBrowser(), other)
		if got := linkTo(t, pg, "/login"); got != "/login" || strings.Contains(pg.Body, oidc.PathAuthorize) {
			t.Errorf("completion in another browser links to %q (or to the relying party), want /login", got)
		}

		// Asked for and set in b: the viewer's request again.
		forgot(email)
		pg = setPassword(b, email)
		back := linkTo(t, pg, oidc.PathAuthorize+"?")
		want, _ := url.Parse(a.URL)
		if got, _ := url.Parse(back); got.Query().Get("state") != a.State || got.Query().Get("client_id") != want.Query().Get("client_id") {
			t.Fatalf("completion links to %q, want the viewer's request %q", back, a.URL)
		}
		pg = b.get(p.URL + back)
		pg = b.submit(pg, "password", map[string]string{"email": email, "password": newPassword})
		r.mustExchange(a, pg.code(t, a))
		// The way back is taken once.
		if v := b.cookie(p, "idp_reset_return"); v != "" {
			t.Errorf("the way back is still kept after the reset: %q", v)
		}
	})
}
