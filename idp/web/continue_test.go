package web_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/kamera-id/idp/idp/testenv"
)

// TestContinueAfterOtherLogin: after a login for a relying party's request
// with prompt=login, made with one of the last backup codes, the
// few-backup-codes notice is left open while the browser logs in again in
// another tab (a session of its own, not this request's login). Going on
// from the old notice issues no code from that other session: prompt=login
// asks for a login of this request. Going on with the session the login
// started still issues the code.
func TestContinueAfterOtherLogin(t *testing.T) {
	for _, other := range []bool{false, true} {
		t.Run(map[bool]string{false: "same session", true: "other login"}[other], func(t *testing.T) {
			testenv.Each(t, func(t *testing.T, db testenv.Database) {
				e := newFuzzEnvOn(t, db)
				e.enableMFAWithSecret(t, fuzzBackupCodes[:3]...)
				flow := e.promptLoginFlow(t)
				rec := e.post("/login/backup", url.Values{"csrf": {e.csrf}, "flow": {flow}, "backup_code": {fuzzBackupCodes[0]}}.Encode())
				notice := rec.Header().Get("Location")
				if rec.Code != http.StatusSeeOther || !strings.HasPrefix(notice, "/login/notice?") {
					t.Fatalf("backup code with 2 left: %d %q, want the notice", rec.Code, notice)
				}
				if other {
					// Another tab: a login to My Page, which replaces the session.
					f := e.newFlow(t, true)
					if rec := e.post("/login/backup", url.Values{"csrf": {e.csrf}, "flow": {f}, "backup_code": {fuzzBackupCodes[1]}}.Encode()); rec.Code != http.StatusSeeOther {
						t.Fatalf("login in another tab: %d\n%s", rec.Code, rec.Body)
					}
				}
				cont := strings.Replace(notice, "/login/notice?", "/login/continue?", 1)
				rec = e.serve(httptest.NewRequest(http.MethodGet, origin+cont, nil))
				loc, _ := url.Parse(rec.Header().Get("Location"))
				switch {
				case rec.Code != http.StatusSeeOther && rec.Code != http.StatusFound:
					t.Errorf("continue (other login %v): %d, want a redirect\n%s", other, rec.Code, rec.Body)
				case other && (loc.Query().Has("code") || loc.Path != "/login"):
					t.Errorf("continue after another login: %s, want the login page (prompt=login)", loc)
				case !other && !loc.Query().Has("code"):
					t.Errorf("continue with the login's own session: %s, want the code", loc)
				}
			})
		})
	}
}
