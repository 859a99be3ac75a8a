package browsertest

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/kamera-id/idp/idp/app"
)

// TestLogin: from the camera viewer to the provider's login page; a wrong
// password keeps the e-mail and shows a message tied to the fields; the
// right one goes back to the viewer with amr ["pwd"]; My Page shows the
// account. The focus ring is visible.
func TestLogin(t *testing.T) {
	eachViewport(t, func(t *testing.T, s *session) {
		s.open(s.st.Viewer+"/", `a[href="/login"]`)
		s.screenshot("viewer")
		s.click(`a[href="/login"]`, "#email")
		if !strings.HasPrefix(s.url(), s.st.IDP+"/login") {
			t.Fatalf("the viewer's login went to %s", s.url())
		}
		for sel, want := range map[string]string{"#email": "username", "#password": "current-password"} {
			var got string
			s.eval(`document.querySelector("`+sel+`").autocomplete`, &got)
			if got != want {
				t.Errorf("%s autocomplete %q, want %q", sel, got, want)
			}
		}
		var outline string
		s.eval(`(() => { const e = document.querySelector("#email"); e.focus(); return getComputedStyle(e).outlineStyle; })()`, &outline)
		if outline == "none" || outline == "" {
			t.Errorf("focused e-mail field: outline-style %q, want a visible focus ring", outline)
		}
		s.page("login", "ja")

		s.fill("#email", s.st.Email)
		s.fill("#password", "wrong-password-1")
		s.submit("#form-error")
		var state struct {
			Email, Described, Invalid string
		}
		s.eval(`({Email: document.querySelector("#email").value,
			Described: document.querySelector("#password").getAttribute("aria-describedby"),
			Invalid: document.querySelector("#password").getAttribute("aria-invalid")})`, &state)
		if state.Email != s.st.Email || state.Described != "form-error" || state.Invalid != "true" {
			t.Errorf("after a wrong password: %+v", state)
		}
		if role := s.attr("#form-error", "role"); role != "alert" {
			t.Errorf("error role %q, want alert", role)
		}
		s.page("login-wrong-password", "ja")

		s.fill("#password", s.st.Password)
		s.submit("#amr")
		if amr := s.amr(); amr != "[pwd]" {
			t.Errorf("viewer shows amr %s, want [pwd]", amr)
		}
		s.screenshot("viewer-logged-in")

		s.open(s.st.IDP+"/account", ".account-email")
		if got := s.text(".account-email"); got != s.st.Email {
			t.Errorf("My Page shows %q", got)
		}
		s.page("mypage", "ja")
	})
}

// TestEnrollAndLoginWithTOTP: turning 2FA on from My Page (手順1-3, the QR
// code and the setup key read off the page, a wrong code, then the right
// one), the completion page's backup codes in two columns with download
// and print; then a new login asks for the code (認証コード) and the viewer
// gets amr ["pwd","otp"].
func TestEnrollAndLoginWithTOTP(t *testing.T) {
	eachViewport(t, func(t *testing.T, s *session) {
		s.loginAtViewer("#amr", false)
		key, codes := s.enroll(true)

		// The completion page: two columns, the download, the print button.
		var cols struct{ SameRow, Apart bool }
		s.eval(`(() => { const [a, b] = [...document.querySelectorAll(".code-grid li")].map(e => e.getBoundingClientRect());
			return {SameRow: Math.abs(a.top - b.top) < 2, Apart: b.left - a.left > 60}; })()`, &cols)
		if !cols.SameRow || !cols.Apart {
			t.Errorf("backup codes are not in two columns: %+v", cols)
		}
		if s.count(".print-button") != 1 {
			t.Error("no print button on the completion page")
		}
		s.run(chromedp.Click(".download-codes", chromedp.ByQuery))
		name, file := s.waitDownload()
		if name != "backup-codes.txt" {
			t.Errorf("download named %q", name)
		}
		for _, c := range codes {
			if !strings.Contains(string(file), c+"\r\n") {
				t.Errorf("downloaded file lacks %s:\n%s", c, file)
			}
		}

		s.logoutAtViewer()
		s.st.clock.Advance(30 * time.Second) // the enrollment used this step's code
		s.loginAtViewer("#code", false)
		var code struct{ Mode, Complete, Pattern string }
		s.eval(`(() => { const c = document.querySelector("#code"); return {Mode: c.inputMode, Complete: c.autocomplete, Pattern: c.pattern}; })()`, &code)
		if code.Mode != "numeric" || code.Complete != "one-time-code" {
			t.Errorf("code field: %+v, want inputmode numeric and autocomplete one-time-code", code)
		}
		s.page("code-step", "ja")
		// The code form answers the password form; the script puts the
		// step's own address in the address bar (a reload fetches it).
		if u := s.url(); !strings.HasPrefix(u, s.st.IDP+"/login/totp?flow=") {
			t.Errorf("the code form answering the password is at %s, want /login/totp?flow=", u)
		}
		s.fill("#code", s.st.wrongCode(key))
		s.submit("#form-error")
		s.page("code-step-wrong-code", "ja")
		// A reload after a wrong code shows the form again, not the wrong
		// code posted again.
		s.run(chromedp.Reload())
		s.waitFor("#code")
		if n := s.count("#form-error"); n != 0 || !strings.HasPrefix(s.url(), s.st.IDP+"/login/totp?flow=") {
			t.Errorf("reloading after a wrong code: %d error messages at %s, want the form at /login/totp?flow=", n, s.url())
		}
		s.fill("#code", s.st.code(key))
		s.submit("#amr")
		if amr := s.amr(); amr != "[pwd otp]" {
			t.Errorf("viewer shows amr %s, want [pwd otp]", amr)
		}
		s.screenshot("viewer-logged-in-2fa")
	})
}

// TestSetupKeyCopyButton: the copy button (JavaScript only) copies the
// setup key without its spaces; without JavaScript the page has no button
// and the setup still works with the key as text.
func TestSetupKeyCopyButton(t *testing.T) {
	eachViewport(t, func(t *testing.T, s *session) {
		s.loginAtViewer("#amr", false)
		s.open(s.st.IDP+"/account/2fa/setup", "#password")
		s.fill("#password", s.st.Password)
		s.submit("#setup-key")
		key := s.text("#setup-key")
		s.click(".copy-button", ".copy-button")
		var copied string
		s.evalAsync(`navigator.clipboard.readText()`, &copied)
		if copied != strings.ReplaceAll(key, " ", "") {
			t.Errorf("clipboard %q, want the key %q without spaces", copied, key)
		}
		var label string
		s.eval(`document.querySelector(".copy-button").textContent`, &label)
		if label != "コピーしました" {
			t.Logf("copy button label after the click: %q", label)
		}
		s.page("setup-copied", "ja")

		// The same page without JavaScript.
		s.run(emulation.SetScriptExecutionDisabled(true))
		s.open(s.st.IDP+"/account/2fa/setup", "#password")
		s.fill("#password", s.st.Password)
		s.submit("#setup-key")
		if n := s.count(".copy-button"); n != 0 {
			t.Errorf("%d copy buttons without JavaScript", n)
		}
		s.screenshot("setup-no-javascript")
		key = s.text("#setup-key")
		s.fill("#code", s.st.code(key))
		s.submit(".code-grid")
		if n := s.count(".backup-code"); n != 10 {
			t.Errorf("%d backup codes without JavaScript", n)
		}
		if s.count(".download-codes") != 1 || s.count(".print-button") != 0 {
			t.Error("without JavaScript: want the download link and no print button")
		}
		s.screenshot("setup-done-no-javascript")
	})
}

// TestLoginWithBackupCode: the link バックアップコードを使用してログイン, a
// wrong backup code, then one typed without its hyphen in capitals; the
// viewer gets amr ["pwd","otp"] and the code is used up.
func TestLoginWithBackupCode(t *testing.T) {
	eachViewport(t, func(t *testing.T, s *session) {
		s.loginAtViewer("#amr", false)
		_, codes := s.enroll(false)
		s.logoutAtViewer()
		s.loginAtViewer("#code", false)
		s.click(`a[href^="/login/backup"]`, "#backup_code")
		s.page("backup-code-step", "ja")
		s.fill("#backup_code", "zzzz-zzzz")
		s.submit("#form-error")
		s.page("backup-code-wrong", "ja")
		s.fill("#backup_code", strings.ToUpper(strings.ReplaceAll(codes[3], "-", "")))
		s.submit("#amr")
		if amr := s.amr(); amr != "[pwd otp]" {
			t.Errorf("viewer shows amr %s, want [pwd otp]", amr)
		}

		// The used code is marked on the backup codes page.
		s.open(s.st.IDP+"/account/2fa/backup-codes", "#password")
		s.page("backup-codes-password", "ja")
		s.fill("#password", s.st.Password)
		s.submit(".code-grid")
		var used []string
		s.eval(`[...document.querySelectorAll(".backup-code.used")].map(c => c.textContent.trim())`, &used)
		if len(used) != 1 || used[0] != codes[3] {
			t.Errorf("used codes %q, want [%s]", used, codes[3])
		}
		s.page("backup-codes", "ja")
	})
}

// TestTurnOff2FA: 2段階認証の解除 from My Page: キャンセル changes nothing,
// a wrong password is refused, the right one turns 2FA off; the next login
// asks for the password only.
func TestTurnOff2FA(t *testing.T) {
	eachViewport(t, func(t *testing.T, s *session) {
		s.loginAtViewer("#amr", false)
		s.enroll(false)
		s.open(s.st.IDP+"/account/2fa", "a.button.danger")
		s.page("2fa-on", "ja")
		s.click("a.button.danger", "#password")
		s.page("disable", "ja")
		s.click(`main form a.button.secondary`, "a.button.danger") // キャンセル
		s.click("a.button.danger", "#password")
		s.fill("#password", "not-my-password")
		s.submit("#form-error")
		s.page("disable-wrong-password", "ja")
		s.fill("#password", s.st.Password)
		s.click(`main form button.danger`, `a[href="/account/2fa/setup"]`)
		if s.count(".notice") != 1 {
			t.Error("no notice that 2FA is off")
		}
		s.page("disabled", "ja")
		s.logoutAtViewer()
		s.loginAtViewer("#amr", false)
		if amr := s.amr(); amr != "[pwd]" {
			t.Errorf("after turning 2FA off: amr %s, want [pwd]", amr)
		}
	})
}

// TestLostPhone: the manual's two ways back in without the phone. With
// the backup codes: log in with one, then turn 2FA off. Without them: the
// support desk runs `idp user reset-mfa` (app.ResetMFA); the customer logs
// in with the password alone and turns 2FA on again with a new key.
func TestLostPhone(t *testing.T) {
	eachViewport(t, func(t *testing.T, s *session) {
		s.loginAtViewer("#amr", false)
		oldKey, codes := s.enroll(false)
		s.logoutAtViewer()

		// Backup code, then 解除.
		s.loginAtViewer("#code", false)
		s.click(`a[href^="/login/backup"]`, "#backup_code")
		s.fill("#backup_code", codes[0])
		s.submit("#amr")
		s.open(s.st.IDP+"/account/2fa/disable", "#password")
		s.fill("#password", s.st.Password)
		s.click(`main form button.danger`, `a[href="/account/2fa/setup"]`)
		s.screenshot("disabled-after-backup-code")
		s.logoutAtViewer()

		// On again, then lost with the codes: the support desk resets it.
		s.loginAtViewer("#amr", false)
		s.st.clock.Advance(30 * time.Second)
		s.enroll(false)
		s.logoutAtViewer()
		if _, _, err := s.st.app.ResetMFA(context.Background(), s.st.Email); err != nil {
			t.Fatal(err)
		}
		s.loginAtViewer("#amr", false)
		if amr := s.amr(); amr != "[pwd]" {
			t.Errorf("after reset-mfa: amr %s, want [pwd] without a code step", amr)
		}
		s.open(s.st.IDP+"/account", "a.settings-link")
		s.page("mypage-after-reset", "ja")
		s.st.clock.Advance(30 * time.Second)
		newKey, _ := s.enroll(false)
		if newKey == oldKey {
			t.Error("re-enrolling gave the old setup key")
		}
		s.logoutAtViewer()
		s.st.clock.Advance(30 * time.Second)
		s.loginAtViewer("#code", false)
		s.fill("#code", s.st.code(newKey))
		s.submit("#amr")
		if amr := s.amr(); amr != "[pwd otp]" {
			t.Errorf("with the new key: amr %s, want [pwd otp]", amr)
		}
	})
}

// TestOtherPages: the error page, the forgot-password page, and the login
// page in English (lang="en").
func TestOtherPages(t *testing.T) {
	eachViewport(t, func(t *testing.T, s *session) {
		s.openError(s.st.IDP+"/oauth2/auth?client_id=nobody&response_type=code&redirect_uri=https%3A%2F%2Fevil.example%2F", "[role=alert]")
		s.page("error", "ja")
		s.openError(s.st.IDP+"/no-such-page", "[role=alert]")
		s.page("not-found", "ja")
		s.open(s.st.IDP+"/login", `a[href^="/forgot-password"]`)
		s.click(`a[href^="/forgot-password"]`, `form[action^="/forgot-password"]`)
		s.page("forgot-password", "ja")
		s.open(s.st.IDP+"/login?ui_locales=en", "#email")
		if label := s.text(`label[for="email"]`); !strings.Contains(label, "mail") {
			t.Errorf("English login label %q", label)
		}
		s.page("login-en", "en")

		// The footer's switch: English on a page that began in Japanese,
		// kept after a form is answered, and back.
		s.open(s.st.IDP+"/login", `.lang-switch a[lang="en"]`)
		s.click(`.lang-switch a[lang="en"]`, `.lang-switch a[lang="ja"]`)
		s.fill("#email", s.st.Email)
		s.fill("#password", "wrong-password-1")
		s.submit("#form-error")
		if label := s.text(`label[for="email"]`); !strings.Contains(label, "mail") {
			t.Errorf("after choosing English and a wrong password: label %q", label)
		}
		s.page("login-switched-en", "en")
		// The page answering the wrong password has the switch too: back to
		// Japanese, on the same login.
		s.click(`.lang-switch a[lang="ja"]`, `.lang-switch a[lang="en"]`)
		if label := s.text(`label[for="email"]`); !strings.Contains(label, "メール") {
			t.Errorf("after switching back: label %q", label)
		}
		if !strings.HasPrefix(s.url(), s.st.IDP+"/login?flow=") {
			t.Errorf("switching after a wrong password went to %s", s.url())
		}
		s.open(s.st.IDP+"/forgot-password", `.lang-switch a[lang="en"]`)
		s.click(`.lang-switch a[lang="en"]`, `.lang-switch a[lang="ja"]`)
		s.open(s.st.IDP+"/forgot-password", `.lang-switch a[lang="ja"]`)
		s.click(`.lang-switch a[lang="ja"]`, `.lang-switch a[lang="en"]`)
		s.page("forgot-password-switched-ja", "ja")
	})
}

// TestLogoutConfirmation: a logout request that does not show it comes
// from the session's own relying party (no id_token_hint) asks first; the
// customer confirms, sees the logged-out page, and the next visit to My
// Page asks for the password again.
func TestLogoutConfirmation(t *testing.T) {
	eachViewport(t, func(t *testing.T, s *session) {
		s.loginAtViewer("#amr", false)
		s.open(s.st.IDP+"/logout", `form[action="/logout"] button[type=submit]`)
		if !strings.HasPrefix(s.url(), s.st.IDP+"/logout") {
			t.Fatalf("the logout request went to %s", s.url())
		}
		s.page("logout-confirm", "ja")
		s.click(`form[action="/logout"] button[type=submit]`, `a[href="/login"]`)
		s.page("logged-out", "ja")
		s.open(s.st.IDP+"/account", "#email")
		if !strings.HasPrefix(s.url(), s.st.IDP+"/login") {
			t.Errorf("My Page after logging out: %s, want the login page", s.url())
		}
	})
}

// TestSelectAccount: a relying party asks the signed-in customer to choose
// the account (prompt=select_account); the page names the account, and
// "another account" leads to the login page.
func TestSelectAccount(t *testing.T) {
	eachViewport(t, func(t *testing.T, s *session) {
		s.loginAtViewer("#amr", false)
		const redirect = "http://localhost:1/callback"
		if _, _, err := s.st.app.CreateClient(context.Background(), app.NewClient{
			ID: "picker", Name: "Picker", RedirectURIs: []string{redirect}, FirstParty: true,
		}); err != nil {
			t.Fatal(err)
		}
		q := url.Values{"client_id": {"picker"}, "response_type": {"code"}, "scope": {"openid"}, "prompt": {"select_account"},
			"redirect_uri": {redirect}, "state": {"state-1234"}, "nonce": {"nonce-1234"},
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
		s.open(s.st.IDP+"/oauth2/auth?"+q.Encode(), "#current-account")
		if got := s.text("#current-account"); got != s.st.Email {
			t.Errorf("the account choice names %q, want %s", got, s.st.Email)
		}
		s.page("select-account", "ja")
		s.click(`button[name="account"][value="other"]`, "#email")
		if !strings.HasPrefix(s.url(), s.st.IDP+"/login?flow=") {
			t.Errorf("another account went to %s, want the login page", s.url())
		}
	})
}

// TestFamilyBrand: a relying party of another family (IDP_BRANDS_FILE)
// gets the login and consent pages in its own look: its product name in
// the header and its colour.
func TestFamilyBrand(t *testing.T) {
	eachViewport(t, func(t *testing.T, s *session) {
		const redirect = "http://localhost:1/callback"
		if _, _, err := s.st.app.CreateClient(context.Background(), app.NewClient{
			ID: "door-cam", Name: "Door Cam Viewer", RedirectURIs: []string{redirect},
		}); err != nil {
			t.Fatal(err)
		}
		q := url.Values{"client_id": {"door-cam"}, "response_type": {"code"}, "scope": {"openid"},
			"redirect_uri": {redirect}, "state": {"state-1234"}, "nonce": {"nonce-1234"},
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
		s.brand = doorBrandColor
		s.open(s.st.IDP+"/oauth2/auth?"+q.Encode(), "#email")
		if got := s.text(".brand-name"); got != "ドアカメラ" {
			t.Errorf("login page brand %q, want ドアカメラ", got)
		}
		s.page("login-door", "ja")
		s.fill("#email", s.st.Email)
		s.fill("#password", s.st.Password)
		s.submit(`form[action="/consent"]`)
		if got := s.text(".brand-name"); got != "ドアカメラ" {
			t.Errorf("consent page brand %q, want ドアカメラ", got)
		}
		s.page("consent-door", "ja")
		s.brand = ownBrandColor
		s.open(s.st.IDP+"/account", ".account-email")
		if got := s.text(".brand-name"); got != "カメラID" {
			t.Errorf("My Page brand %q, want the provider's カメラID", got)
		}
	})
}

// TestPasswordResetFromMailFolder: a customer with 2FA on forgets the
// password, asks for a link from the login page, opens it from the mail
// the provider wrote into its mail folder (what make run does without an
// SMTP server), sets a new password, and logs in with it, still passing the
// second step; the old password no longer works and the link is spent.
func TestPasswordResetFromMailFolder(t *testing.T) {
	eachViewport(t, func(t *testing.T, s *session) {
		s.loginAtViewer("#amr", false)
		key, _ := s.enroll(false)
		s.logoutAtViewer()

		s.open(s.st.IDP+"/login", `a[href^="/forgot-password"]`)
		s.click(`a[href^="/forgot-password"]`, `form[action^="/forgot-password"] #email`)
		s.page("forgot-password", "ja")
		s.fill("#email", s.st.Email)
		s.submit(messagePage)
		s.page("reset-sent", "ja")

		link := s.st.resetLinkFromMailFolder()
		s.open(link, "#new_password")
		if strings.Contains(s.url(), "token=") {
			t.Errorf("the reset form keeps the token in its URL: %s", s.url())
		}
		s.page("new-password", "ja")
		s.fill("#new_password", "short")
		s.fill("#new_password_confirm", "short")
		s.eval(`document.querySelectorAll("input[minlength]").forEach(e => e.removeAttribute("minlength"))`, nil)
		s.submit("[role=alert]")
		s.page("new-password-too-short", "ja")
		newPassword := "a-brand-new-passphrase-7"
		s.fill("#new_password", newPassword)
		s.fill("#new_password_confirm", newPassword)
		s.submit(messagePage)
		s.page("reset-done", "ja")

		// The old password is refused; the new one leads to the code step.
		s.open(s.st.Viewer+"/login", "#email")
		s.fill("#email", s.st.Email)
		s.fill("#password", s.st.Password)
		s.submit("[role=alert]")
		s.fill("#password", newPassword)
		s.submit("#code")
		s.st.clock.Advance(30 * time.Second)
		s.fill("#code", s.st.code(key))
		s.submit("#amr")
		if amr := s.amr(); amr != "[pwd otp]" {
			t.Errorf("after the reset: amr %s, want [pwd otp] (a reset keeps 2FA)", amr)
		}

		// The link is spent.
		s.openError(link, "[role=alert], h1")
		if s.count("#new_password") != 0 {
			t.Error("the reset link opened the form a second time")
		}
		s.screenshot("reset-link-spent")
		s.st.Password = newPassword
	})
}

// messagePage is a page with a message and a link back to the login,
// without a form (not the form the link is also on).
const messagePage = `main:not(:has(form)) a[href^="/login"]`

// resetLinkFromMailFolder waits for the newest password reset mail in the
// provider's mail folder and returns its link (polled, with a deadline).
func (st *stack) resetLinkFromMailFolder() string {
	st.t.Helper()
	linkRE := regexp.MustCompile(`https?://\S+/reset-password\?token=\S+`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(st.MailDir, "*.eml"))
		slices.Sort(files)
		for i := len(files) - 1; i >= 0; i-- {
			raw, err := os.ReadFile(files[i])
			if err != nil {
				continue
			}
			msg, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				continue
			}
			body, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, msg.Body))
			if err != nil {
				st.t.Fatalf("%s: body: %v", files[i], err)
			}
			if l := linkRE.FindString(string(body)); l != "" {
				return l
			}
		}
		if time.Now().After(deadline) {
			st.t.Fatalf("no reset mail in %s within 20s", st.MailDir)
		}
		time.Sleep(20 * time.Millisecond) // polling the folder, with a deadline
	}
}

// TestNarrowPhone: the narrowest phone the pages are made for (360 px):
// the login, My Page and every step of the setup fit without sideways
// scrolling (checked on each page) and pass axe.
func TestNarrowPhone(t *testing.T) {
	needBrowser(t)
	s := newSession(t, startStack(t), viewport{Name: "narrow", Width: 360, Height: 640, Mobile: true})
	s.loginAtViewer("#amr", true)
	key, _ := s.enroll(true)
	s.logoutAtViewer()
	s.st.clock.Advance(30 * time.Second)
	s.loginAtViewer("#code", false)
	s.page("code-step", "ja")
	s.fill("#code", s.st.code(key))
	s.submit("#amr")
}
