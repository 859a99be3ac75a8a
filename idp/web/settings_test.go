package web_test

// My Page's two-step verification settings sent twice: a reload (the
// browser posting the form again), a Back-and-resubmit, a double-click, a
// second tab.

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var flowInput = regexp.MustCompile(`name="flow" value="([^"]+)"`)

// settingsBack is the expired-flow page's link back to the settings.
const settingsBack = `<a href="/account/2fa">`

// signIn signs the browser in to My Page: with the password alone, or,
// with 2FA turned on first (enableMFA), the password and a backup code.
func (e *fuzzEnv) signIn(t *testing.T, withMFA bool) {
	t.Helper()
	if !withMFA {
		flow := e.newFlow(t, false)
		if rec := e.post("/login", url.Values{"csrf": {e.csrf}, "flow": {flow}, "email": {fuzzEmail}, "password": {fuzzPassword}}.Encode()); rec.Code != http.StatusSeeOther {
			t.Fatalf("login: %d\n%s", rec.Code, rec.Body)
		}
		return
	}
	e.enableMFA(t)
	flow := e.newFlow(t, true)
	if rec := e.post("/login/backup", url.Values{"csrf": {e.csrf}, "flow": {flow}, "backup_code": {fuzzBackupCodes[0]}}.Encode()); rec.Code != http.StatusSeeOther {
		t.Fatalf("login with a backup code: %d\n%s", rec.Code, rec.Body)
	}
}

// formOf returns the CSRF token and flow id of the page's form.
func formOf(t *testing.T, what string, rec *httptest.ResponseRecorder) url.Values {
	t.Helper()
	c, f := csrfField.FindStringSubmatch(rec.Body.String()), flowInput.FindStringSubmatch(rec.Body.String())
	if rec.Code != http.StatusOK || c == nil || f == nil {
		t.Fatalf("%s: %d, want a form\n%s", what, rec.Code, rec.Body)
	}
	return url.Values{"csrf": {c[1]}, "flow": {f[1]}}
}

// getForm opens a settings page and returns its form's hidden fields.
func (e *fuzzEnv) getForm(t *testing.T, path string) url.Values {
	t.Helper()
	return formOf(t, "GET "+path, e.serve(httptest.NewRequest(http.MethodGet, origin+path, nil)))
}

// with returns the form's fields with k set to v.
func with(form url.Values, k, v string) url.Values {
	out := url.Values{}
	for key, vs := range form {
		out[key] = slices.Clone(vs)
	}
	out.Set(k, v)
	return out
}

// TestSettingsFlowGoneLinksBack: a setting's form whose flow is gone (sent
// again after it was used, or left open too long) gets the expired-flow
// page; its user is signed in, so the page links back to the settings, not
// to the login.
func TestSettingsFlowGoneLinksBack(t *testing.T) {
	e := newFuzzEnv(t)
	e.signIn(t, true)
	gone := with(e.getForm(t, "/account/2fa/disable"), "flow", "no-such-flow")
	gone.Set("password", fuzzPassword)
	for _, path := range []string{"/account/2fa/disable", "/account/2fa/backup-codes", "/account/2fa/backup-codes/replace"} {
		rec := e.post(path, gone.Encode())
		if body := rec.Body.String(); rec.Code != http.StatusBadRequest || !strings.Contains(body, settingsBack) || strings.Contains(body, `href="/login"`) {
			t.Errorf("%s with a flow that is gone: %d, want the expired-flow page linking back to /account/2fa\n%s", path, rec.Code, body)
		}
	}
}
