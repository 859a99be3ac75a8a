package config

import (
	"strings"
	"testing"
)

// TestIssuerSchemeAsWritten: an issuer whose scheme is not written in lower
// case is refused (url.Parse would lower it, and the cookie and HSTS rules,
// which read the issuer as written, would take an https issuer for http).
func TestIssuerSchemeAsWritten(t *testing.T) {
	for _, iss := range []string{"HTTPS://idp.example.com", "Https://idp.example.com", "HTTP://localhost:8080"} {
		if _, err := Load("", env(map[string]string{"IDP_ISSUER": iss})); err == nil || !strings.Contains(err.Error(), "lower case") {
			t.Errorf("IDP_ISSUER=%s: error %v, want the scheme refused", iss, err)
		}
	}
}

// TestDatabaseURLNeverEchoed: a mistyped database URL's error does not show
// its password.
func TestDatabaseURLNeverEchoed(t *testing.T) {
	for _, u := range []string{"postgres//u:secretpw@127.0.0.1:5432/x", "postgres:/u:secretpw@127.0.0.1/x",
		" postgres ://u:secretpw@127.0.0.1/x", "mysql://u:secretpw@db/x"} {
		_, err := Load("", env(map[string]string{"IDP_DATABASE_URL": u, "IDP_SECRET_KEY_FILE": "/etc/idp/key"}))
		if err == nil || strings.Contains(err.Error(), "secretpw") {
			t.Errorf("IDP_DATABASE_URL=%q: error %v, want one without the password", u, err)
		}
	}
}
