package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/testenv"
)

// auditEvents counts the user's audit events of type typ.
func auditEvents(t *testing.T, p *provider, typ string) int {
	t.Helper()
	return testenv.AuditEvents(t, p.app.Store, p.mustUser(email).ID, typ)
}

// queuedMails counts the outbox's mails whose subject holds subject.
func queuedMails(t *testing.T, p *provider, subject string) int {
	t.Helper()
	n := 0
	for id := int64(1); id <= 100; id++ {
		m, err := p.app.Store.GetMail(context.Background(), id)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			t.Fatal(err)
		case strings.Contains(m.Subject, subject):
			n++
		}
	}
	return n
}

// TestSetupPageReloaded: reloading the page with the QR code (the browser
// posts the password form again: no code) shows that page again, for the
// same secret. It is no wrong code: nothing is counted, recorded or locked,
// however often it happens. An empty code sent with the code form is a
// wrong one, as before; the right code then turns 2FA on.
func TestSetupPageReloaded(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, b := signedInProvider(t, db)
		form := b.get(p.URL + "/account/2fa/setup")
		pg := b.submit(form, "password", map[string]string{"password": password})
		key := strings.ReplaceAll(pg.byID("setup-key"), " ", "")
		if len(key) != 32 {
			t.Fatalf("setup page: %d, setup key %q", pg.Status, key)
		}
		for i := 1; i <= p.app.Config.MFAMaxFailures+1; i++ {
			again := b.submit(form, "password", map[string]string{"password": password})
			if got := strings.ReplaceAll(again.byID("setup-key"), " ", ""); again.Status != http.StatusOK ||
				again.alert() != "" || got != key || again.formWith("code") == nil {
				t.Fatalf("reload %d of the setup page: %d, alert %q, key %q; want the same page (key %s) without an alert",
					i, again.Status, again.alert(), got, key)
			}
		}
		if n := auditEvents(t, p, "mfa.code_failed"); n != 0 {
			t.Errorf("reloads of the setup page recorded %d mfa.code_failed events, want none", n)
		}

		pg = b.submit(pg, "code", map[string]string{"code": ""})
		if pg.Status != http.StatusOK || pg.alert() == "" || pg.formWith("code") == nil {
			t.Fatalf("empty confirmation code: %d %q, want the form again with an alert", pg.Status, pg.alert())
		}
		if n := auditEvents(t, p, "mfa.code_failed"); n != 1 {
			t.Errorf("an empty confirmation code recorded %d mfa.code_failed events, want 1", n)
		}
		pg = b.submit(pg, "code", map[string]string{"code": totpCode(t, p, key)})
		if !strings.Contains(pg.Body, "2段階認証設定の完了") {
			t.Fatalf("the right code after the reloads: %d %q, want the completion page", pg.Status, pg.alert())
		}
	})
}

// TestDisableInTwoTabs: 2FA turned off in one tab; the disable form of
// another tab, sent afterwards, finds it off already and shows the
// settings: no second audit event, no second mail.
func TestDisableInTwoTabs(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p, b := signedInProvider(t, db)
		enroll(t, p, b)
		first := b.get(p.URL + "/account/2fa/disable")
		second := b.get(p.URL + "/account/2fa/disable")
		pg := b.submit(first, "password", map[string]string{"password": password})
		if pg.Status != http.StatusOK || pg.URL.Path != "/account/2fa" || p.mustUser(email).MFAEnabled {
			t.Fatalf("disable: %d %s", pg.Status, pg.URL)
		}
		const subject = "2段階認証が解除されました"
		if n := queuedMails(t, p, subject); n != 1 {
			t.Fatalf("%d mails %q after turning 2FA off, want 1", n, subject)
		}
		pg = b.submit(second, "password", map[string]string{"password": password})
		if pg.Status != http.StatusOK || pg.URL.Path != "/account/2fa" || pg.URL.RawQuery != "" {
			t.Errorf("the other tab's disable form: %d %s, want the settings page without a notice", pg.Status, pg.URL)
		}
		if n := auditEvents(t, p, "mfa.disabled"); n != 1 {
			t.Errorf("%d mfa.disabled events, want 1", n)
		}
		if n := queuedMails(t, p, subject); n != 1 {
			t.Errorf("%d mails %q, want 1", n, subject)
		}
	})
}
