package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"
	_ "modernc.org/sqlite"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// totpCode is what Google Authenticator shows at the provider's now.
func totpCode(t *testing.T, p *provider, secret string) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, p.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// accountLogin logs the browser in to My Page with a password (and a TOTP
// code when secret is set), through the page asked for.
func accountLogin(t *testing.T, p *provider, b *browser, secret string) {
	t.Helper()
	pg := b.get(p.URL + "/account/2fa")
	pg = b.submit(pg, "password", map[string]string{"email": email, "password": password})
	if secret != "" {
		pg = b.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)})
	}
	if pg.Status != http.StatusOK || !strings.Contains(pg.Body, "2段階認証設定") || pg.URL.Path != "/account/2fa" {
		t.Fatalf("login to My Page did not end on /account/2fa: %d %s\n%s", pg.Status, pg.URL, pg.Body)
	}
}

// enrolledUser creates the test user and turns 2FA on for it from My Page
// (in a browser of its own): the user, the secret and the backup codes.
func enrolledUser(t *testing.T, p *provider) (*store.User, string, []string) {
	t.Helper()
	u := p.createUser(email, password)
	b := p.newBrowser()
	accountLogin(t, p, b, "")
	secret, codes := enroll(t, p, b)
	return u, secret, codes
}

// enroll turns 2FA on from My Page, as the manual shows, checking the wrong
// password and wrong code on the way. It returns the secret and the codes.
func enroll(t *testing.T, p *provider, b *browser) (string, []string) {
	t.Helper()
	pg := b.get(p.URL + "/account/2fa/setup")
	if pg.formWith("password") == nil {
		t.Fatalf("setup starts with the password: %d\n%s", pg.Status, pg.Body)
	}
	pg = b.submit(pg, "password", map[string]string{"password": "wrong password"})
	if pg.alert() == "" || pg.formWith("password") == nil {
		t.Fatalf("wrong password at setup: want the form again with an alert:\n%s", pg.Body)
	}
	pg = b.submit(pg, "password", map[string]string{"password": password})
	for _, want := range []string{"手順1", "手順2", "手順3", "認証アプリを起動し下のQRコードを読み込んでください",
		"QRコードを読み込めない場合は下記のセットアップキーを入力してください", "認証アプリに表示された確認コードを入力し送信してください"} {
		if !strings.Contains(pg.Body, want) {
			t.Errorf("setup page lacks %q", want)
		}
	}
	secret := strings.ReplaceAll(pg.byID("setup-key"), " ", "")
	if len(secret) != 32 {
		t.Fatalf("setup key %q: want 32 base32 characters (160 bits)", secret)
	}
	if imgs := imgsIn(pg, "setup-qr"); len(imgs) != 1 || !strings.HasPrefix(imgs[0], "data:image/png;base64,") {
		t.Fatalf("setup-qr: want one PNG image, got %v", imgs)
	}
	pg = b.submit(pg, "code", map[string]string{"code": wrongCode(totpCode(t, p, secret))})
	if pg.alert() == "" || pg.byID("setup-key") == "" {
		t.Fatalf("wrong confirmation code: want the setup page again with an alert:\n%s", pg.Body)
	}
	pg = b.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)})
	if !strings.Contains(pg.Body, "2段階認証設定の完了") {
		t.Fatalf("want the completion page:\n%s", pg.Body)
	}
	var codes []string
	for _, n := range pg.byClass("backup-code") {
		codes = append(codes, strings.TrimSpace(text(n)))
	}
	if len(codes) != 10 {
		t.Fatalf("%d backup codes, want 10", len(codes))
	}
	// Next step: the code used to confirm cannot be replayed at login.
	p.clock.Advance(30 * time.Second)
	return secret, codes
}

func imgsIn(p *page, id string) []string {
	var out []string
	for _, box := range findAll(p.Doc, func(n *htmlNode) bool { return attr(n, "id") == id }) {
		for _, img := range findAll(box, func(n *htmlNode) bool { return n.Data == "img" }) {
			out = append(out, attr(img, "src"))
		}
	}
	return out
}

func wrongCode(c string) string {
	if c == "000000" {
		return "111111"
	}
	return "000000"
}

// rpLogin starts a relying party login and posts the password; it returns
// the page after the password step.
func rpLogin(t *testing.T, b *browser, r *rp, extra ...oauth2.AuthCodeOption) (authRequest, *page) {
	t.Helper()
	a := r.authorize(extra...)
	pg := b.submit(b.get(a.URL), "password", map[string]string{"email": email, "password": password})
	return a, pg
}

func TestTwoStepVerification(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		u := p.createUser(email, password)
		r := p.newRP("viewer", true)

		// Section 4: turning it on from My Page.
		b := p.newBrowser()
		accountLogin(t, p, b, "")
		secret, codes := enroll(t, p, b)

		// The session that logged in with a password alone does not satisfy the
		// next relying party login: it asks for the code.
		a := r.authorize()
		pg := b.get(a.URL)
		if pg.formWith("password") == nil && pg.formWith("code") == nil {
			t.Fatalf("password-only session satisfied a login after 2FA was turned on: %d %v", pg.Status, pg.Redirect)
		}

		// Section 2: the second step at login.
		b = p.newBrowser()
		a, pg = rpLogin(t, b, r)
		for _, want := range []string{"2段階認証コード入力", "認証システムアプリから確認コードを取得して入力してください。", "認証コード", "認証する", "または", "バックアップコードを使用してログイン"} {
			if !strings.Contains(pg.Body, want) {
				t.Errorf("code page lacks %q", want)
			}
		}
		bad := b.submit(pg, "code", map[string]string{"code": wrongCode(totpCode(t, p, secret))})
		if bad.Status != http.StatusOK || bad.alert() == "" || bad.formWith("code") == nil {
			t.Fatalf("wrong code: want the form again with an alert, got %d", bad.Status)
		}
		code := totpCode(t, p, secret)
		tk := r.mustExchange(a, b.submit(bad, "code", map[string]string{"code": code}).code(t, a))
		if got := amr(tk.Claims); !slices.Equal(got, []string{"pwd", "otp"}) {
			t.Fatalf("amr = %v, want [pwd otp]", got)
		}
		if tk.Claims["sub"] != u.ID {
			t.Fatalf("sub = %v", tk.Claims["sub"])
		}

		// A code is accepted once: the same code in the same step is refused.
		b2 := p.newBrowser()
		_, pg = rpLogin(t, b2, r)
		if again := b2.submit(pg, "code", map[string]string{"code": code}); again.alert() == "" || again.Redirect != nil {
			t.Fatalf("replayed TOTP code accepted: %d %v", again.Status, again.Redirect)
		}

		// Section 3: a backup code, lower-case and without its separator.
		p.clock.Advance(30 * time.Second)
		b3 := p.newBrowser()
		a, pg = rpLogin(t, b3, r)
		pg = b3.get(p.URL + linkTo(t, pg, "/login/backup"))
		for _, want := range []string{"バックアップコード入力", "認証コードがわからない場合、バックアップコードでもログイン可能です。", "認証コード入力画面に戻る"} {
			if !strings.Contains(pg.Body, want) {
				t.Errorf("backup code page lacks %q", want)
			}
		}
		typed := strings.ToLower(strings.ReplaceAll(codes[0], "-", ""))
		tk = r.mustExchange(a, b3.submit(pg, "backup_code", map[string]string{"backup_code": typed}).code(t, a))
		if got := amr(tk.Claims); !slices.Equal(got, []string{"pwd", "otp"}) {
			t.Fatalf("backup code login amr = %v", got)
		}
		// ... and only once.
		b4 := p.newBrowser()
		_, pg = rpLogin(t, b4, r)
		pg = b4.get(p.URL + linkTo(t, pg, "/login/backup"))
		if again := b4.submit(pg, "backup_code", map[string]string{"backup_code": strings.ToUpper(codes[0])}); again.alert() == "" {
			t.Fatal("a used backup code was accepted again")
		}

		// Used codes are marked on the settings page (after the password);
		// replacing them all invalidates the old set.
		pg = b.get(p.URL + "/account/2fa/backup-codes")
		pg = b.submit(pg, "password", map[string]string{"password": password})
		used := 0
		for _, n := range pg.byClass("backup-code") {
			if slices.Contains(strings.Fields(attr(n, "class")), "used") {
				used++
				if strings.TrimSpace(text(n)) != codes[0] {
					t.Errorf("marked as used: %q, want %q", text(n), codes[0])
				}
			}
		}
		if used != 1 {
			t.Fatalf("%d codes marked used, want 1", used)
		}
		pg = b.submit(pg, "flow", nil) // the replace form
		var fresh []string
		for _, n := range pg.byClass("backup-code") {
			fresh = append(fresh, strings.TrimSpace(text(n)))
		}
		if len(fresh) != 10 || slices.Contains(fresh, codes[1]) {
			t.Fatalf("replaced codes: %v", fresh)
		}
		b5 := p.newBrowser()
		_, pg = rpLogin(t, b5, r)
		pg = b5.get(p.URL + linkTo(t, pg, "/login/backup"))
		if old := b5.submit(pg, "backup_code", map[string]string{"backup_code": codes[1]}); old.alert() == "" {
			t.Fatal("a replaced backup code still works")
		}

		// My Page shows the recent security events.
		pg = b.get(p.URL + "/account")
		if pg.Status != http.StatusOK || len(pg.byClass("audit-event")) == 0 {
			t.Errorf("My Page shows no audit events:\n%s", pg.Body)
		}
		events, err := p.app.Store.ListAuditEvents(context.Background(), u.ID, 50)
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, e := range events {
			types = append(types, e.Type)
		}
		for _, want := range []string{"mfa.enabled", "mfa.code_failed", "mfa.backup_code_used", "mfa.codes_replaced"} {
			if !slices.Contains(types, want) {
				t.Errorf("no %s audit event in %v", want, types)
			}
		}
	})
}

// linkTo returns the href on the page that starts with prefix.
func linkTo(t *testing.T, p *page, prefix string) string {
	t.Helper()
	for _, a := range findAll(p.Doc, func(n *htmlNode) bool { return n.Data == "a" }) {
		if h := attr(a, "href"); strings.HasPrefix(h, prefix) {
			return h
		}
	}
	t.Fatalf("no link to %s on %s:\n%s", prefix, p.URL, p.Body)
	return ""
}

func TestLostPhoneAndDisable(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		r := p.newRP("viewer", true)
		_, _, codes := enrolledUser(t, p)

		// The phone is lost: log in to My Page with a backup code, then turn 2FA off.
		lost := p.newBrowser()
		pg := lost.get(p.URL + "/account/2fa/disable")
		pg = lost.submit(pg, "password", map[string]string{"email": email, "password": password})
		pg = lost.get(p.URL + linkTo(t, pg, "/login/backup"))
		pg = lost.submit(pg, "backup_code", map[string]string{"backup_code": codes[3]})
		if pg.URL.Path != "/account/2fa/disable" {
			t.Fatalf("after the backup code, want the disable page, got %s", pg.URL)
		}
		for _, want := range []string{"2段階認証を解除をします。", "ユーザーアカウントのパスワードを入力し解除ボタンを押してください。", "キャンセル", "解除"} {
			if !strings.Contains(pg.Body, want) {
				t.Errorf("disable page lacks %q", want)
			}
		}
		bad := lost.submit(pg, "password", map[string]string{"password": "not my password"})
		if bad.alert() == "" || bad.formWith("password") == nil {
			t.Fatal("wrong password at disable: want the form again with an alert")
		}
		pg = lost.submit(bad, "password", map[string]string{"password": password})
		if pg.Status != http.StatusOK || pg.URL.Path != "/account/2fa" {
			t.Fatalf("after disabling: %d %s", pg.Status, pg.URL)
		}
		// The next login asks for no code.
		a, pg := rpLogin(t, p.newBrowser(), r)
		if got := amr(r.mustExchange(a, pg.code(t, a)).Claims); !slices.Equal(got, []string{"pwd"}) {
			t.Fatalf("after disabling, amr = %v", got)
		}
	})
}

func TestSupportReset(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		r := p.newRP("viewer", true)
		u, secret, _ := enrolledUser(t, p)
		// The lost phone: signed in, and holding the app's tokens.
		phone := p.newBrowser()
		a, pg := rpLogin(t, phone, r)
		p.clock.Advance(30 * time.Second)
		pg = phone.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)})
		lost := r.mustExchange(a, pg.code(t, a))
		if _, _, err := p.app.ResetMFA(context.Background(), email); err != nil {
			t.Fatal(err)
		}
		if phone.hasSession(p) {
			t.Error("the phone's session survived the support reset")
		}
		if _, err := refresh(r, lost.RefreshToken); err == nil {
			t.Error("the phone's refresh token survived the support reset")
		}
		a, pg = rpLogin(t, p.newBrowser(), r)
		if got := amr(r.mustExchange(a, pg.code(t, a)).Claims); !slices.Equal(got, []string{"pwd"}) {
			t.Fatalf("after a support reset, amr = %v", got)
		}
		events, _ := p.app.Store.ListAuditEvents(context.Background(), u.ID, 10)
		if len(events) == 0 || events[0].Type != "mfa.reset" {
			t.Fatalf("latest audit event: %v, want mfa.reset", events)
		}
		// Again, now that the user has no 2FA: nothing to do, and nothing
		// done (no event, the new session kept), but no error either.
		again := p.newBrowser()
		accountLogin(t, p, again, "")
		before, _ := p.app.Store.ListAuditEvents(context.Background(), u.ID, 100)
		if _, reset, err := p.app.ResetMFA(context.Background(), email); err != nil || reset {
			t.Errorf("resetting a user without 2FA: reset %v, %v; want nothing done and no error", reset, err)
		}
		if after, _ := p.app.Store.ListAuditEvents(context.Background(), u.ID, 100); len(after) != len(before) {
			t.Errorf("a reset with nothing to reset recorded an event: %v", after[0])
		}
		if !again.hasSession(p) {
			t.Error("a reset with nothing to reset ended the user's session")
		}
	})
}

func TestSecondStepLockout(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		r := p.newRP("viewer", true)
		_, secret, _ := enrolledUser(t, p)

		// Failures count per account: two browsers share the limit.
		b1, b2 := p.newBrowser(), p.newBrowser()
		_, pg1 := rpLogin(t, b1, r)
		a2, pg2 := rpLogin(t, b2, r)
		for i := range 5 {
			bb, pg := b1, pg1
			if i%2 == 1 {
				bb, pg = b2, pg2
			}
			res := bb.submit(pg, "code", map[string]string{"code": wrongCode(totpCode(t, p, secret))})
			if i < 4 && res.Status != http.StatusOK {
				t.Fatalf("failure %d answered %d", i+1, res.Status)
			}
			if i == 4 && res.Status != http.StatusTooManyRequests {
				t.Fatalf("5th failure answered %d, want 429", res.Status)
			}
		}
		// Locked: even the right code answers 429.
		if res := b2.submit(pg2, "code", map[string]string{"code": totpCode(t, p, secret)}); res.Status != http.StatusTooManyRequests || res.alert() == "" {
			t.Fatalf("right code during lockout: %d", res.Status)
		}
		// Lockouts grow: five more failures after the first lockout ended
		// lock the account for longer than the first time.
		p.clock.Advance(61 * time.Second)
		for range 5 {
			b1.submit(pg1, "code", map[string]string{"code": wrongCode(totpCode(t, p, secret))})
		}
		p.clock.Advance(61 * time.Second)
		if res := b2.submit(pg2, "code", map[string]string{"code": totpCode(t, p, secret)}); res.Status != http.StatusTooManyRequests {
			t.Fatalf("second lockout ended after the first one's length: %d", res.Status)
		}
		// After the cooling-off period a right code works and resets it all:
		// the next lockout is as short as the first.
		p.clock.Advance(2 * time.Minute)
		r.mustExchange(a2, b2.submit(pg2, "code", map[string]string{"code": totpCode(t, p, secret)}).code(t, a2))

		b3 := p.newBrowser()
		a3, pg3 := rpLogin(t, b3, r)
		for range 5 {
			b3.submit(pg3, "code", map[string]string{"code": wrongCode(totpCode(t, p, secret))})
		}
		if res := b3.submit(pg3, "code", map[string]string{"code": totpCode(t, p, secret)}); res.Status != http.StatusTooManyRequests {
			t.Fatalf("no lockout after five more failures: %d", res.Status)
		}
		p.clock.Advance(61 * time.Second)
		r.mustExchange(a3, b3.submit(pg3, "code", map[string]string{"code": totpCode(t, p, secret)}).code(t, a3))
	})
}

func TestLowBackupCodesNotice(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		r := p.newRP("viewer", true)
		_, _, codes := enrolledUser(t, p)
		for i, c := range codes[:8] {
			bb := p.newBrowser()
			a, pg := rpLogin(t, bb, r)
			pg = bb.submit(bb.get(p.URL+linkTo(t, pg, "/login/backup")), "backup_code", map[string]string{"backup_code": c})
			if i < 7 {
				r.mustExchange(a, pg.code(t, a))
				continue
			}
			// Two left: the notice comes before returning to the relying party.
			if pg.Redirect != nil || !strings.Contains(pg.Body, "2") {
				t.Fatalf("with 2 codes left, want the notice page, got %d %v", pg.Status, pg.Redirect)
			}
			linkTo(t, pg, "/account/2fa/backup-codes")
			// A page of its own: its language switch shows it in English,
			// and a reload shows it again.
			// (A login in English: its "get new codes" link stays English.)
			eb := p.newBrowser()
			_, epg := rpLogin(t, eb, r, oauth2.SetAuthURLParam("ui_locales", "en"))
			epg = eb.submit(eb.get(p.URL+linkTo(t, epg, "/login/backup")), "backup_code", map[string]string{"backup_code": codes[8]})
			codesPage := eb.get(p.URL + linkTo(t, epg, "/account/2fa/backup-codes"))
			if !strings.Contains(codesPage.Body, `<html lang="en">`) {
				t.Errorf("the English notice's link to new codes opens a page that is not in English")
			}
			// The codes, shown after the password, are in English too (the
			// form's URL carries no language).
			if shown := eb.submit(codesPage, "password", map[string]string{"password": password}); len(shown.byClass("backup-code")) == 0 ||
				!strings.Contains(shown.Body, `<html lang="en">`) {
				t.Errorf("the codes after the password, from the English notice: not the codes in English\n%s", shown.Body)
			}
			enLink := pg.URL
			for _, a := range findAll(pg.Doc, func(n *htmlNode) bool { return n.Data == "a" }) {
				if h := attr(a, "href"); strings.Contains(h, "lang=en") {
					enLink, _ = pg.URL.Parse(h)
				}
			}
			en := bb.get(enLink.String())
			if en.Status != http.StatusOK || !strings.Contains(en.Body, `<html lang="en">`) {
				t.Errorf("the notice's language switch: %d\n%s", en.Status, en.Body)
			}
			if again := bb.get(pg.URL.String()); again.Status != http.StatusOK || again.Body == "" {
				t.Errorf("the notice reloaded: %d", again.Status)
			}
			next := bb.get(p.URL + linkTo(t, pg, "/login/continue"))
			r.mustExchange(a, next.code(t, a))
		}
	})
}

func TestConcurrentSecondSteps(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		r := p.newRP("viewer", true)
		_, secret, codes := enrolledUser(t, p)

		race := func(n int, field string, value func() string, backup bool) int {
			type attempt struct {
				b  *browser
				pg *page
			}
			var tries []attempt
			for range n {
				bb := p.newBrowser()
				_, pg := rpLogin(t, bb, r)
				if backup {
					pg = bb.get(p.URL + linkTo(t, pg, "/login/backup"))
				}
				tries = append(tries, attempt{bb, pg})
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins := 0
			start := make(chan struct{})
			for _, a := range tries {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					res := a.b.submit(a.pg, field, map[string]string{field: value()})
					if res.Redirect != nil && res.Redirect.Query().Get("code") != "" {
						mu.Lock()
						wins++
						mu.Unlock()
					}
				}()
			}
			close(start)
			wg.Wait()
			return wins
		}
		if wins := race(20, "backup_code", func() string { return codes[5] }, true); wins != 1 {
			t.Errorf("20 concurrent logins with one backup code: %d succeeded, want 1", wins)
		}
		// The 19 losers counted as failures and locked the account; wait
		// the lockouts out.
		p.clock.Advance(10 * time.Minute)
		code := totpCode(t, p, secret)
		if wins := race(2, "code", func() string { return code }, false); wins != 1 {
			t.Errorf("2 concurrent logins with one TOTP code: %d succeeded, want 1", wins)
		}
	})
}

// TestNoSecretsInDatabase dumps every table as text and looks for the TOTP
// secret and the backup codes in any spelling.
func TestNoSecretsInDatabase(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		_, secret, codes := enrolledUser(t, p)
		dump := dumpDatabase(t, db)
		if len(dump) < 1000 {
			t.Fatalf("dump is suspiciously small (%d bytes)", len(dump))
		}
		needles := []string{secret, strings.ToLower(secret)}
		for _, c := range codes {
			needles = append(needles, c, strings.ReplaceAll(c, "-", ""), strings.ToUpper(strings.ReplaceAll(c, "-", "")))
		}
		for _, n := range needles {
			if strings.Contains(dump, n) {
				t.Errorf("the database holds %q in plain text", n)
			}
		}
	})
}

func dumpDatabase(t *testing.T, db testenv.Database) string {
	t.Helper()
	var sb strings.Builder
	if db.Name == "sqlite" {
		path := strings.TrimPrefix(db.URL, "sqlite://")
		for _, f := range []string{path, path + "-wal"} {
			b, _ := os.ReadFile(f)
			sb.Write(b)
		}
		conn, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		rows, err := conn.Query(`SELECT name FROM sqlite_master WHERE type='table'`)
		if err != nil {
			t.Fatal(err)
		}
		var tables []string
		for rows.Next() {
			var n string
			_ = rows.Scan(&n)
			tables = append(tables, n)
		}
		rows.Close()
		for _, tb := range tables {
			rs, err := conn.Query("SELECT * FROM " + tb)
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rs.Columns()
			for rs.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				_ = rs.Scan(ptrs...)
				for _, v := range vals {
					sb.WriteString(toText(v))
					sb.WriteByte('\t')
				}
			}
			rs.Close()
		}
		return sb.String()
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	for _, tb := range tables {
		rs, err := conn.Query(ctx, "SELECT t::text FROM "+pgx.Identifier{tb}.Sanitize()+" t")
		if err != nil {
			t.Fatal(err)
		}
		for rs.Next() {
			var s string
			_ = rs.Scan(&s)
			sb.WriteString(s)
			sb.WriteByte('\n')
		}
		rs.Close()
	}
	return sb.String()
}

func toText(v any) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	case nil:
		return ""
	default:
		return strings.TrimSpace(strings.ReplaceAll(fmt.Sprint(x), "\n", " "))
	}
}

// TestFullWidthCode: a code typed with a Japanese IME (full-width digits,
// a full-width space) is accepted at login.
func TestFullWidthCode(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db)
		r := p.newRP("viewer", true)
		_, secret, _ := enrolledUser(t, p)
		p.clock.Advance(30 * time.Second) // the enrollment used this step's code
		b := p.newBrowser()
		a, pg := rpLogin(t, b, r)
		wide := []rune(strings.Map(func(r rune) rune { return r - '0' + '０' }, totpCode(t, p, secret)))
		r.mustExchange(a, b.submit(pg, "code", map[string]string{"code": string(wide[:3]) + "\u3000" + string(wide[3:])}).code(t, a))
	})
}

// TestSetupCodeLimit: wrong confirmation codes at setup are limited as
// wrong codes at login are (the contract's 429).
func TestSetupCodeLimit(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, b := signedInProvider(t, db)
		pg, secret := setupPage(t, p, b)
		limit := p.app.Config.MFAMaxFailures
		for i := 1; i <= limit; i++ {
			pg = b.submit(pg, "code", map[string]string{"code": wrongCode(totpCode(t, p, secret))})
			want := http.StatusOK
			if i == limit {
				want = http.StatusTooManyRequests
			}
			if pg.Status != want || pg.alert() == "" || pg.formWith("code") == nil {
				t.Fatalf("wrong code %d of %d: status %d, want %d with the form and an alert", i, limit, pg.Status, want)
			}
		}
		if pg = b.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)}); pg.Status != http.StatusTooManyRequests {
			t.Errorf("right code while locked: %d, want 429", pg.Status)
		}
		if u := p.mustUser(email); u.MFAEnabled {
			t.Error("2FA turned on while the setup was locked")
		}
	})
}

// TestSetupInTwoTabs: a setup started again in another tab replaces the
// pending secret; the first tab's code, for the secret it showed, is not
// taken for a wrong one: the page says the setup was started again and
// asks for the password again, never showing the other setup's secret
// (another browser's may be someone else's); the setup then starts over
// with a secret of its own, whose code completes it.
func TestSetupInTwoTabs(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, b := signedInProvider(t, db)
		first, firstKey := setupPage(t, p, b)
		_, secondKey := setupPage(t, p, b)
		pg := b.submit(first, "code", map[string]string{"code": totpCode(t, p, firstKey)})
		if pg.Status != http.StatusOK || !strings.Contains(pg.alert(), "別の画面で設定がやり直された") ||
			pg.formWith("password") == nil || strings.Contains(pg.Body, secondKey[:8]) || pg.byID("setup-key") != "" {
			t.Fatalf("the first tab's code after a setup in another tab: %d %q; want the notice and the password form, no secret",
				pg.Status, pg.alert())
		}
		pg = b.submit(pg, "password", map[string]string{"password": password})
		thirdKey := strings.ReplaceAll(pg.byID("setup-key"), " ", "")
		if thirdKey == "" || thirdKey == secondKey || thirdKey == firstKey {
			t.Fatalf("the setup started over: key %q (the others %s, %s)", thirdKey, firstKey, secondKey)
		}
		pg = b.submit(pg, "code", map[string]string{"code": totpCode(t, p, thirdKey)})
		if !strings.Contains(pg.Body, "2段階認証設定の完了") {
			t.Fatalf("the new secret's code: want the completion page, got %d %q", pg.Status, pg.alert())
		}
	})
}

// signedInProvider starts a provider with the test user (no 2FA) and a
// browser signed in to My Page.
func signedInProvider(t *testing.T, db testenv.Database) (*provider, *browser) {
	t.Helper()
	p := startProvider(t, db)
	p.createUser(email, password)
	b := p.newBrowser()
	accountLogin(t, p, b, "")
	return p, b
}

// setupPage starts a 2FA setup in b (a new tab: its own flow) and returns
// the page with the QR code and its setup key.
func setupPage(t *testing.T, p *provider, b *browser) (*page, string) {
	t.Helper()
	pg := b.submit(b.get(p.URL+"/account/2fa/setup"), "password", map[string]string{"password": password})
	key := strings.ReplaceAll(pg.byID("setup-key"), " ", "")
	if len(key) != 32 {
		t.Fatalf("setup page: %d, setup key %q", pg.Status, key)
	}
	return pg, key
}

// TestExpiredLoginStartsAgain: a login left open past IDP_FLOW_LIFETIME
// starts again where it began, in the browser that started it, with a
// notice, instead of ending on the expired-flow page: a relying party's
// login at the password step and at the TOTP step (back into its
// authorization request, and on to its code), and a login to My Page (on
// to the page asked for). A tab of an older login of the same browser gets
// the expired-flow page.
func TestExpiredLoginStartsAgain(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		// A short lifetime: the test's clock, an hour behind, must stay in
		// the past of fosite's own checks (auth_time).
		p := startProvider(t, db, func(c *config.Config) { c.FlowLifetime = 3 * time.Minute })
		_, secret, _ := enrolledUser(t, p)
		r := p.newRP("viewer", true)
		expire := func() { p.clock.Advance(p.app.Config.FlowLifetime + time.Minute) }
		const notice = "ログインの有効期限が切れたため"
		startedAgain := func(what string, pg *page) {
			t.Helper()
			if pg.Status != http.StatusOK || pg.formWith("password") == nil || !strings.Contains(pg.alert(), notice) {
				t.Fatalf("%s: want the login page again with the notice, got %d %s (alert %q)", what, pg.Status, pg.URL, pg.alert())
			}
		}

		// At the password step.
		b := p.newBrowser()
		a := r.authorize()
		pg := b.get(a.URL)
		expire()
		pg = b.submit(pg, "password", map[string]string{"email": email, "password": password})
		startedAgain("password step", pg)
		if typed := inputValue(pg, "email"); typed != email {
			t.Errorf("the address typed before: %q in the new form, want %q", typed, email)
		}
		if other := b.get(p.URL + "/login"); other.alert() != "" || inputValue(other, "email") != "" {
			t.Errorf("the notice or the address on a new login page: %q, %q", other.alert(), inputValue(other, "email"))
		}
		pg = b.submit(pg, "password", map[string]string{"email": email, "password": password})
		r.mustExchange(a, b.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)}).code(t, a))

		// At the TOTP step: the password again, then a code of a later time step.
		b = p.newBrowser()
		a, pg = rpLogin(t, b, r)
		expire()
		pg = b.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)})
		startedAgain("TOTP step", pg)
		pg = b.submit(pg, "password", map[string]string{"email": email, "password": password})
		r.mustExchange(a, b.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)}).code(t, a))

		// A login to My Page goes on to the page asked for.
		b = p.newBrowser()
		pg = b.get(p.URL + "/account/2fa")
		expire()
		pg = b.submit(pg, "password", map[string]string{"email": email, "password": password})
		startedAgain("My Page", pg)
		accountPage := b.submit(b.submit(pg, "password", map[string]string{"email": email, "password": password}),
			"code", map[string]string{"code": totpCode(t, p, secret)})
		if accountPage.URL.Path != "/account/2fa" {
			t.Errorf("My Page login started again: ended on %d %s, want /account/2fa", accountPage.Status, accountPage.URL)
		}

		// A completed login leaves nothing to start again: its form sent
		// again (the back button) gets the expired-flow page, as does a
		// login's after a logout.
		p.clock.Advance(30 * time.Second) // a time step whose code is unused
		b = p.newBrowser()
		a, pg = rpLogin(t, b, r)
		tk := r.mustExchange(a, b.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)}).code(t, a))
		if again := b.submit(pg, "code", map[string]string{"code": "000000"}); again.Status != http.StatusBadRequest {
			t.Errorf("a completed login's form sent again: %d %s, want the expired-flow page", again.Status, again.URL)
		}
		relogin := b.get(r.authorize(oauth2.SetAuthURLParam("prompt", "login")).URL)
		raw, _ := tk.Extra("id_token").(string)
		b.get(p.URL + "/logout?" + url.Values{"id_token_hint": {raw}}.Encode())
		expire()
		if again := b.submit(relogin, "password", map[string]string{"email": email, "password": password}); again.Status != http.StatusBadRequest {
			t.Errorf("a login's form after a logout: %d %s, want the expired-flow page", again.Status, again.URL)
		}

		// Only the browser's newest login starts again.
		b = p.newBrowser()
		older := b.get(r.authorize().URL)
		newer := b.get(r.authorize().URL)
		expire()
		if pg := b.submit(older, "password", map[string]string{"email": email, "password": password}); pg.Status != http.StatusBadRequest {
			t.Errorf("an older login's tab: %d %s, want the expired-flow page", pg.Status, pg.URL)
		}
		startedAgain("the newest login's tab", b.submit(newer, "password", map[string]string{"email": email, "password": password}))
	})
}

// inputValue is the value of the page's input named name ("" without one).
func inputValue(pg *page, name string) string {
	for _, in := range findAll(pg.Doc, func(n *htmlNode) bool { return n.Data == "input" && attr(n, "name") == name }) {
		return attr(in, "value")
	}
	return ""
}
